// Package yamlguard refuses YAML that a strict single-object parser would
// mishandle: several documents, repeated keys, alias bombs. render uses it
// for every file kustomize reads and for bundle.yaml, promote for
// release.yaml. It has no other dependency than the YAML parser.
package yamlguard

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

// maxExpandedNodes bounds the YAML nodes a file may expand to once aliases
// are resolved. kustomize copies every alias in place, so a few hundred bytes
// of nested anchors ("billion laughs") would otherwise take minutes and
// gigabytes; real manifests stay far below this.
const maxExpandedNodes = 1_000_000

// CheckExpansion refuses YAML whose aliases expand past maxExpandedNodes.
// It returns nil for input it cannot parse; the real parser reports that.
func CheckExpansion(data []byte) error {
	if !bytes.Contains(data, []byte("*")) {
		return nil // no aliases
	}
	dec := kyaml.NewDecoder(bytes.NewReader(data))
	var total int64
	for {
		var n kyaml.Node
		if err := dec.Decode(&n); err != nil {
			return nil // io.EOF, or a syntax error the real parser reports
		}
		memo := map[*kyaml.Node]int64{}
		total += expanded(&n, memo, 0)
		if total > maxExpandedNodes {
			return fmt.Errorf("YAML aliases expand to more than %d nodes (a \"billion laughs\" document?)", maxExpandedNodes)
		}
	}
}

// expanded counts the nodes under n with aliases resolved, saturating past
// the limit; memo makes shared anchors cost one walk.
func expanded(n *kyaml.Node, memo map[*kyaml.Node]int64, depth int) int64 {
	if n == nil || depth > 10_000 {
		return maxExpandedNodes + 1
	}
	if v, ok := memo[n]; ok {
		return v
	}
	memo[n] = maxExpandedNodes + 1 // a cycle counts as too many
	var c int64 = 1
	if n.Kind == kyaml.AliasNode {
		c = expanded(n.Alias, memo, depth+1)
	} else {
		for _, ch := range n.Content {
			c += expanded(ch, memo, depth+1)
			if c > maxExpandedNodes {
				c = maxExpandedNodes + 1
				break
			}
		}
	}
	memo[n] = c
	return c
}

// Documents counts the documents in data (0 for input it cannot parse;
// the real parser reports that). Empty documents count too.
func Documents(data []byte) int {
	dec := kyaml.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		var node kyaml.Node
		if err := dec.Decode(&node); err != nil {
			if errors.Is(err, io.EOF) {
				return n
			}
			return 0
		}
		n++
	}
}

// Check refuses YAML that a strict single-object parser would mishandle:
// more than one document (the rest would be silently ignored), a key given
// twice in one mapping (the last would silently win) or aliases that expand
// past a million nodes.
func Check(data []byte) error {
	if n := Documents(data); n > 1 {
		return fmt.Errorf("a second YAML document is not allowed (found %d documents)", n)
	}
	if err := CheckExpansion(data); err != nil {
		return err
	}
	var doc kyaml.Node
	if err := kyaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return nil // empty, or a syntax error the real parser reports
	}
	return duplicateKey(&doc, 0)
}

// duplicateKey reports the first mapping key that appears twice.
func duplicateKey(n *kyaml.Node, depth int) error {
	if n == nil || depth > 10_000 || n.Kind == kyaml.AliasNode {
		return nil
	}
	if n.Kind == kyaml.MappingNode {
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != kyaml.ScalarNode || k.Value == "<<" {
				continue
			}
			if seen[k.Value] {
				return fmt.Errorf("line %d: key %q appears twice", k.Line, k.Value)
			}
			seen[k.Value] = true
		}
	}
	for _, c := range n.Content {
		if err := duplicateKey(c, depth+1); err != nil {
			return err
		}
	}
	return nil
}
