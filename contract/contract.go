// Package contract holds the names of tandem's user contract
// (CONTRACT.md §1, §3, §6) that several packages write or read: the file API
// version, the labels and annotations on objects and the field managers.
// render writes them, applier reads and writes them, promote and cmd/agent
// use the API version; none of them imports another for a name. Its only
// code is Short, the commit abbreviation of every message. It imports
// nothing.
package contract

// Short is the 7-character abbreviation of a commit hash, as in git log --oneline.
func Short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

// APIVersion is the apiVersion of bundle.yaml and release.yaml.
const APIVersion = "tandem.dev/v1alpha1"

// Labels tandem puts on objects.
const (
	// LabelBundle names the bundle an object belongs to.
	LabelBundle = "tandem.dev/bundle"
	// LabelColor names the color of a colored object.
	LabelColor = "tandem.dev/color"
	// LabelInventory marks a bundle color's inventory ConfigMap.
	LabelInventory = "tandem.dev/inventory"
)

// Annotations tandem puts on objects.
const (
	// AnnotationCommit records the commit a colored object was rendered from.
	AnnotationCommit = "tandem.dev/commit"
	// AnnotationDigest records the render digest of a colored object's color.
	AnnotationDigest = "tandem.dev/digest"
	// AnnotationLiveCommit records, on a stable twin, the commit it was rendered from.
	AnnotationLiveCommit = "tandem.dev/live-commit"
	// AnnotationRoute set to "false" on a Service opts it out of a stable twin.
	AnnotationRoute = "tandem.dev/route"
	// AnnotationReplicas records a scaled-down workload's replicas, to scale it back.
	AnnotationReplicas = "tandem.dev/replicas"
)

// Field managers of tandem's server-side applies.
const (
	// FieldManager owns every field tandem applies.
	FieldManager = "tandem"
	// TrafficFieldManager owns the stable twins' selectors (the traffic flip).
	TrafficFieldManager = "tandem/traffic"
)
