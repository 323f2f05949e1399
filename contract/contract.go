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
	// AnnotationSharedPrefix starts the annotation each bundle that renders
	// a shared (uncolored) object puts on it: "shared.tandem.dev/<bundle>"
	// with the hash of its render of the object. Several bundles may render
	// one shared object (a Namespace) when their hashes are equal.
	AnnotationSharedPrefix = "shared.tandem.dev/"
)

// Field managers of tandem's server-side applies. Every bundle applies with
// its own managers, so the API server records which bundle owns each field
// (kubectl get -o yaml --show-managed-fields shows it).
const (
	// LegacyFieldManager is the manager every bundle shared before managers
	// were per bundle; it is also the prefix of every tandem manager. The
	// applier still recognises it and hands its fields over to the
	// bundle's own manager on the next apply.
	LegacyFieldManager = "tandem"
	// LegacyTrafficFieldManager is the stable twins' manager before managers
	// were per bundle.
	LegacyTrafficFieldManager = "tandem/traffic"
)

// FieldManagerFor is the field manager of bundle's applies and inventories:
// "tandem/<bundle>".
func FieldManagerFor(bundle string) string { return LegacyFieldManager + "/" + bundle }

// TrafficFieldManagerFor is the field manager of bundle's stable twins (the
// traffic flip): "tandem/<bundle>/traffic".
func TrafficFieldManagerFor(bundle string) string { return FieldManagerFor(bundle) + "/traffic" }

// IsFieldManager reports whether name is one of tandem's field managers:
// "tandem" or any name under "tandem/".
func IsFieldManager(name string) bool {
	const prefix = LegacyFieldManager + "/"
	return name == LegacyFieldManager || (len(name) > len(prefix) && name[:len(prefix)] == prefix)
}
