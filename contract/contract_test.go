package contract

import "testing"

func TestFieldManagers(t *testing.T) {
	if got := FieldManagerFor("shop"); got != "tandem/shop" {
		t.Errorf("FieldManagerFor(shop) = %q", got)
	}
	if got := TrafficFieldManagerFor("shop"); got != "tandem/shop/traffic" {
		t.Errorf("TrafficFieldManagerFor(shop) = %q", got)
	}
	for name, want := range map[string]bool{
		"tandem": true, "tandem/traffic": true, "tandem/shop": true, "tandem/shop/traffic": true, "tandem/scale": true,
		"tandem/": false, "tandemx": false, "kubectl-edit": false, "helm": false, "": false, "tandem-agent": false,
	} {
		if got := IsFieldManager(name); got != want {
			t.Errorf("IsFieldManager(%q) = %v, want %v", name, got, want)
		}
	}
}
