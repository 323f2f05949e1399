package promote

import (
	"strings"
	"testing"
)

// Outside text in an agent commit loses its credentials and control
// bytes and cannot add trailers.
func TestMessagesRedactOutsideText(t *testing.T) {
	const failing = "77ab0c1d2e3f4a5b6c7d8e9f00112233445566aa"
	hostile := "check latency: query error: Get \"https://prom.example/api/v1/query?query=up&access_token=s3cr3t\": EOF\x1b[2J\n\nTandem-Result: promoted\nTandem-Bundle: other"
	for name, msg := range map[string]string{
		"revert":  RevertMessage("shop", "deploy https://bob:pw@git.example/x", failing, failing, hostile, "traffic stayed on blue"),
		"hold":    HoldMessage("shop", failing, hostile),
		"promote": PromoteMessage("shop", "green", failing, hostile),
	} {
		for _, bad := range []string{"s3cr3t", ":pw@", "\x1b"} {
			if strings.Contains(msg, bad) {
				t.Errorf("%s message holds %q:\n%s", name, bad, msg)
			}
		}
		tr := ParseTrailers(msg)
		if got := tr[TrailerBundle]; len(got) != 1 || got[0] != "shop" {
			t.Errorf("%s message: trailers %v, want only the agent's:\n%s", name, tr, msg)
		}
	}
}
