package render

import (
	"bytes"
	"fmt"
	"time"
)

// Default limits of one render (see Options).
const (
	// DefaultTimeout bounds one render's wall time.
	DefaultTimeout = 30 * time.Second
	// DefaultMaxObjects bounds the objects one render reads and produces.
	// kustomize's resource map checks every object it adds against every
	// object already there (resWrangler.Append), so a render's time grows
	// with the square of its objects: 5,000 one-line ConfigMaps take about
	// 15 s of CPU, 10,000 about a minute. The default keeps a render under
	// its deadline with room to spare.
	DefaultMaxObjects = 5000
	// DefaultWorkerMemory bounds the memory of one render worker process.
	DefaultWorkerMemory = 512 << 20
)

// Limit names one of a render's limits.
type Limit string

// The limits a render can exceed; each names the Options field that sets it.
const (
	LimitTime    Limit = "Timeout"
	LimitObjects Limit = "MaxObjects"
	LimitBytes   Limit = "MaxBytes"
	LimitMemory  Limit = "WorkerOptions.MemoryLimit"
	// LimitChartBytes is a remote chart's archive, or any chart unpacked.
	LimitChartBytes Limit = "MaxChartBytes"
)

// LimitError is a render stopped by one of its limits. Retrying the same
// commit with the same limits fails the same way.
type LimitError struct {
	// Limit is the limit exceeded.
	Limit Limit
	// Max is the limit's value, as configured ("30s", "5000 objects").
	Max string
	// File is the repository file (slash-separated) whose reading crossed
	// the limit, or the bundle's bundle.yaml when no one file did.
	File string
	// Detail says what crossed it ("57600 objects read so far").
	Detail string
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: %s, over the render limit of %s (%s)", e.File, e.Detail, e.Max, e.Limit)
}

// countObjects estimates from above how many objects a YAML stream holds
// without parsing it: one per document with content, and for a document
// that may be a List (it mentions "List"), one per "kind" in it. It reads
// each byte once, so a huge file is refused before kustomize's quadratic
// resource map sees it.
func countObjects(data []byte) int {
	n := 0
	for len(data) > 0 {
		var doc []byte
		doc, data = nextDocument(data)
		if !hasContent(doc) {
			continue
		}
		if bytes.Contains(doc, []byte("List")) {
			n += max(1, bytes.Count(doc, []byte("kind"))-1)
			continue
		}
		n++
	}
	return n
}

// nextDocument splits data at the first line that starts with "---" (a
// YAML document separator; inside a block scalar such a line is indented).
func nextDocument(data []byte) (doc, rest []byte) {
	for i := 0; i < len(data); {
		if bytes.HasPrefix(data[i:], []byte("---")) && (i+3 == len(data) || isSpace(data[i+3])) {
			if i == 0 {
				// A separator at the very start ends an empty document.
				return nil, skipLine(data[3:])
			}
			return data[:i], skipLine(data[i+3:])
		}
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			break
		}
		i += j + 1
	}
	return data, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipLine(data []byte) []byte {
	if j := bytes.IndexByte(data, '\n'); j >= 0 {
		return data[j+1:]
	}
	return nil
}

// hasContent says whether a document holds more than blank lines,
// comments and directives.
func hasContent(doc []byte) bool {
	for _, line := range bytes.Split(doc, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) > 0 && line[0] != '#' && line[0] != '%' {
			return true
		}
	}
	return false
}
