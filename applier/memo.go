package applier

import (
	"crypto/sha256"
	"strings"
	"sync"

	"github.com/tandem-gitops/tandem/contract"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// appliedMemo remembers, for the objects of each set the Applier applied,
// the apply body it sent and the object the server held afterwards (UID and
// resourceVersion). An object whose live UID and resourceVersion are still
// the remembered ones has not been written since, by anyone: applying the
// same body again is a no-op (server-side apply is idempotent), so Apply
// sends neither its dry run nor its apply. Any write to the object (a
// kubectl edit, a scale, another bundle's label, a controller's status
// update) changes its resourceVersion, and the object takes the full path
// again: dry run, then apply to restore what drifted.
//
// The memo lives in memory only: a restarted agent dry-runs every object
// once, as before.
type appliedMemo struct {
	mu   sync.Mutex
	sets map[string]map[string]memoEntry // set key -> object key -> entry
}

// memoEntry is what the memo keeps of one object.
type memoEntry struct {
	uid  types.UID
	rv   string
	body [sha256.Size]byte
}

// memoKey identifies the set s applies: its namespace, bundle and inventory.
func memoKey(s Set) string {
	return s.Namespace + "/" + s.Bundle + "/" + s.inventoryColor()
}

// unchanged reports whether live is, to the resourceVersion, the object the
// last apply of body left behind in set.
func (m *appliedMemo) unchanged(set string, live *unstructured.Unstructured, body []byte) bool {
	m.mu.Lock()
	e, ok := m.sets[set][refOf(live).key()]
	m.mu.Unlock()
	return ok && e.uid == live.GetUID() && e.rv == live.GetResourceVersion() &&
		e.body == sha256.Sum256(body) && legacyEntry(live, contract.LegacyFieldManager) < 0
}

// record replaces what the memo knows of set with the applied items that
// are exactly the result of applying their body (not scaled up or handed
// over from a legacy field manager afterwards).
func (m *appliedMemo) record(set string, items []*item) {
	entries := make(map[string]memoEntry, len(items))
	for _, it := range items {
		if it.result == nil || it.body == nil || it.touched || it.result.GetResourceVersion() == "" {
			continue
		}
		entries[refOf(it.result).key()] = memoEntry{
			uid: it.result.GetUID(), rv: it.result.GetResourceVersion(), body: sha256.Sum256(it.body),
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sets == nil {
		m.sets = map[string]map[string]memoEntry{}
	}
	m.sets[set] = entries
}

// forgetBundle drops every set of bundle in namespace.
func (m *appliedMemo) forgetBundle(namespace, bundle string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	prefix := namespace + "/" + bundle + "/"
	for k := range m.sets {
		if strings.HasPrefix(k, prefix) {
			delete(m.sets, k)
		}
	}
}
