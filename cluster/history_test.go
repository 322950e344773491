package cluster

import (
	"encoding/json"
	"testing"
)

// TestHistoryKindJSON: the typed kind reads and writes the strings that
// history entries have always stored, including kinds it has no constant
// for.
func TestHistoryKindJSON(t *testing.T) {
	for _, tt := range []struct {
		json string
		want HistoryKind
	}{
		{`{"epoch":3,"kind":"failover","new_primary":"n2"}`, HistoryFailover},
		{`{"epoch":4,"kind":"switchover","new_primary":"n1"}`, HistorySwitchover},
		{`{"epoch":5,"kind":"manual failover","new_primary":"n3"}`, HistoryManualFailover},
		{`{"epoch":1,"kind":"bootstrap","new_primary":"n1"}`, HistoryBootstrap},
		{`{"epoch":2,"kind":"takeover","new_primary":"n1"}`, HistoryTakeover},
		{`{"epoch":6,"kind":"something newer","new_primary":"n1"}`, HistoryKind("something newer")},
	} {
		var e HistoryEntry
		if err := json.Unmarshal([]byte(tt.json), &e); err != nil {
			t.Fatalf("%s: %v", tt.json, err)
		}
		if e.Kind != tt.want {
			t.Errorf("%s: kind %q, want %q", tt.json, e.Kind, tt.want)
		}
		out, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		var back map[string]any
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatal(err)
		}
		if back["kind"] != string(tt.want) {
			t.Errorf("%s: written kind %v, want %q", tt.json, back["kind"], tt.want)
		}
	}
}
