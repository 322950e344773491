package proc

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	in := "Parse error: Ignoring unknown option 'passwd=hunter2x'\nlogin ok for hunter2x\npassword: other-secret\nStatus: OFF"
	out := Redact(in, "hunter2x")
	for _, s := range []string{"hunter2x", "other-secret"} {
		if strings.Contains(out, s) {
			t.Errorf("redacted output holds %q:\n%s", s, out)
		}
	}
	if !strings.Contains(out, "Status: OFF") {
		t.Errorf("redaction lost an innocent line:\n%s", out)
	}
}

func TestLines(t *testing.T) {
	var got []string
	Lines("a\n\nb\r\nc\nd\n", 2, func(l string) { got = append(got, l) })
	want := []string{"a", "b", "... 2 more lines"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Lines = %q, want %q", got, want)
	}
}
