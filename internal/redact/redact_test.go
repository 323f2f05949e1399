package redact

import (
	"strings"
	"testing"
)

func TestText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`Post "https://user:hunter2@prom.example/api/v1/query": EOF`, `Post "https://user:REDACTED@prom.example/api/v1/query": EOF`},
		{`https://ghp_abcdef123456@github.com/org/repo.git`, `https://REDACTED@github.com/org/repo.git`},
		{`Get "http://prom:9090/api/v1/query?query=up&token=s3cr3t&x=1": dial tcp: refused`, `Get "http://prom:9090/api/v1/query?query=up&token=REDACTED&x=1": dial tcp: refused`},
		{`https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=abc123&X-Amz-Expires=60`, `https://b.s3.amazonaws.com/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Expires=60`},
		{`https://acct.blob.core.windows.net/c/b?sv=2020&sig=AbC%3D&se=2026`, `https://acct.blob.core.windows.net/c/b?sv=2020&sig=REDACTED&se=2026`},
		{`?access_token=a&api_key=b&apikey=c&password=d&client_secret=e&private_token=f&key=g`, `?access_token=REDACTED&api_key=REDACTED&apikey=REDACTED&password=REDACTED&client_secret=REDACTED&private_token=REDACTED&key=REDACTED`},
		{`Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.x`, `Authorization: Bearer REDACTED`},
		{`query error: bad_data: parse error: rate(x{key="abc"}[5m])`, `query error: bad_data: parse error: rate(x{key="abc"}[5m])`},
		{`monkey=banana https://example.com/path`, `monkey=banana https://example.com/path`},
		{`ssh://git@github.com/org/repo`, `ssh://REDACTED@github.com/org/repo`},
	} {
		if got := Text(c.in); got != c.want {
			t.Errorf("Text(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestCommit(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a\x1b[31mred\x00\r\nb", "a[31mred\nb"},
		{"reason\n\nTandem-Result: promoted\n", "reason\nTandem-Result: promoted"},
		{"rtl \u202egnp.exe", "rtl gnp.exe"},
		{"token=abc", "token=REDACTED"},
		{strings.Repeat("é", MaxCommitText), strings.Repeat("é", (MaxCommitText-3)/2) + "…"},
	} {
		if got := Commit(c.in); got != c.want {
			t.Errorf("Commit(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestMrkdwn(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"<!channel> deploy", "&lt;!channel&gt; deploy"},
		{"<@U123> <http://evil|click> a&b", "&lt;@U123&gt; &lt;http://evil|click&gt; a&amp;b"},
		{"fix *bold* `code`", "fix *bold* `code`"},
		{"https://u:p@x/", "https://u:REDACTED@x/"},
	} {
		if got := Mrkdwn(c.in); got != c.want {
			t.Errorf("Mrkdwn(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestEventAndSubject(t *testing.T) {
	if got := Event("line1\nline2\x07 token=x"); got != "line1 line2 token=REDACTED" {
		t.Errorf("Event: %q", got)
	}
	if got := Event(strings.Repeat("x", 5000)); len(got) > MaxEventMessage {
		t.Errorf("Event: %d bytes, want at most %d", len(got), MaxEventMessage)
	}
	if got := Subject("a\nb", 2); got != "…" && len(got) > 2 {
		t.Errorf("Subject: %q", got)
	}
	if got := JSON("a\x00b\nc password=x"); got != "ab\nc password=REDACTED" {
		t.Errorf("JSON: %q", got)
	}
}

func FuzzText(f *testing.F) {
	f.Add("https://u:p@h/?token=x")
	f.Fuzz(func(t *testing.T, s string) {
		out := Commit(s)
		if len(out) > MaxCommitText || strings.Contains(out, "\n\n") || strings.ContainsRune(out, '\x1b') {
			t.Fatalf("Commit(%q) = %q", s, out)
		}
		if m := Mrkdwn(s); strings.ContainsAny(m, "<>") {
			t.Fatalf("Mrkdwn(%q) = %q", s, m)
		}
	})
}
