package cluster

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPositionCompare(t *testing.T) {
	pg := PGPosition
	forked := pg(3, 0x5000).WithFork(2, 0x4000) // timeline 3 branched off 2 at 0x4000
	for _, c := range []struct {
		name string
		a, b Position
		want Order
		cmp  int
	}{
		{"same timeline, lower LSN", pg(2, 0x100), pg(2, 0x200), Behind, -1},
		{"same timeline, same LSN", pg(2, 0x200), pg(2, 0x200), Equal, 0},
		{"same timeline, higher LSN", pg(2, 0x300), pg(2, 0x200), Ahead, 1},
		{"higher timeline, fork unknown: timeline first", pg(3, 0x100), pg(2, 0x900), Ahead, 1},
		{"lower timeline, fork unknown: timeline first", pg(2, 0x900), pg(3, 0x100), Behind, -1},
		{"higher timeline, lower one before the fork", forked, pg(2, 0x3000), Ahead, 1},
		{"higher timeline, lower one at the fork", forked, pg(2, 0x4000), Ahead, 1},
		{"higher timeline, lower one past the fork", forked, pg(2, 0x4100), Diverged, 1},
		{"lower timeline past the fork", pg(2, 0x4100), forked, Diverged, -1},
		{"fork off another timeline than the lower one's", forked, pg(1, 0x9000), Ahead, 1},
		{"timeline unknown: LSN alone", pg(0, 0x100), pg(5, 0x80), Ahead, 1},
		{"zero is behind", Position{}, pg(1, 1), Behind, -1},
		{"known is ahead of zero", pg(1, 1), Position{}, Ahead, 1},
		{"zero equals zero", Position{}, pg(0, 0), Equal, 0},
	} {
		if got := c.a.Compare(c.b); got != c.want {
			t.Errorf("%s: Compare = %s, want %s", c.name, got, c.want)
		}
		if got := c.a.Cmp(c.b); got != c.cmp {
			t.Errorf("%s: Cmp = %d, want %d", c.name, got, c.cmp)
		}
	}
}

func TestPositionLag(t *testing.T) {
	for _, c := range []struct {
		name   string
		p, ref Position
		want   int64
		ok     bool
	}{
		{"behind", PGPosition(1, 0x100), PGPosition(1, 0x180), 0x80, true},
		{"ahead", PGPosition(1, 0x200), PGPosition(1, 0x180), 0, true},
		{"across timelines: bytes of WAL", PGPosition(2, 0x100), PGPosition(3, 0x180), 0x80, true},
		{"zero position: the whole reference", Position{}, PGPosition(1, 0x180), 0x180, true},
		{"zero reference: unknown", PGPosition(1, 0x100), Position{}, 0, false},
	} {
		got, ok := c.p.LagTo(c.ref)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: LagTo = %d, %t; want %d, %t", c.name, got, ok, c.want, c.ok)
		}
	}
	if u := EnginePostgreSQL.LagUnit(); u != "bytes" {
		t.Errorf("PostgreSQL lag unit %q", u)
	}
}

func TestPositionJSON(t *testing.T) {
	p := PGPosition(3, 0x3000060).WithFork(2, 0x3000000)
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"engine":"postgresql","timeline":3,"lsn":"0/3000060","fork":{"timeline":2,"lsn":"0/3000000"}}`; string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var q Position
	if err := json.Unmarshal(b, &q); err != nil || q != p {
		t.Errorf("round trip = %+v, %v; want %+v", q, err, p)
	}
	if b, _ := json.Marshal(Position{}); string(b) != "{}" {
		t.Errorf("zero marshals as %s", b)
	}
	if err := json.Unmarshal([]byte(`{"engine":"oracle","scn":"1"}`), &q); err == nil || !strings.Contains(err.Error(), "unknown engine") {
		t.Errorf("unknown engine decoded: %v", err)
	}
	if p.String() != "0/3000060" || (Position{}).String() != "none" {
		t.Errorf("String = %q, %q", p.String(), Position{}.String())
	}
}

// Records written before positions were engine-tagged must still decode.
func TestLegacyRecordsDecode(t *testing.T) {
	const member = `{"name":"n2","role":"replica","state":"running","position":{"lsn":"0/3000060","timeline":3},` +
		`"receive_lsn":"0/3000100","replay_lsn":"0/3000060","lag_bytes":0,"lag_seconds":0,"streaming":true,` +
		`"upstream":"n1","api_url":"http://10.0.0.2:8008","conn_host":"10.0.0.2","conn_port":5432,` +
		`"tags":{"priority":1},"updated_at":"2026-03-04T05:06:07Z"}`
	var m Member
	if err := json.Unmarshal([]byte(member), &m); err != nil {
		t.Fatal(err)
	}
	if m.Position != PGPosition(3, 0x3000060) || m.Received != PGPosition(0, 0x3000100) || m.Replayed != PGPosition(0, 0x3000060) ||
		m.Name != "n2" || m.Upstream != "n1" || !m.Streaming || m.ConnPort != 5432 || m.Tags.Priority != 1 {
		t.Errorf("legacy member decoded as %+v", m)
	}

	const request = `{"kind":"switchover","from":"n1","requested_at":"2026-03-04T05:06:07Z",` +
		`"handoff":{"target":"n2","final_lsn":"0/5000028","epoch":7,"stopped_at":"2026-03-04T05:06:08Z"}}`
	var r Request
	if err := json.Unmarshal([]byte(request), &r); err != nil {
		t.Fatal(err)
	}
	h := r.Handoff
	if h == nil || h.Target != "n2" || h.Epoch != 7 || h.Final != PGPosition(0, 0x5000028) {
		t.Fatalf("legacy handoff decoded as %+v", h)
	}
	// A final position of unknown timeline compares by LSN alone.
	if PGPosition(2, 0x5000028).Compare(h.Final) != Equal || PGPosition(2, 0x5000030).Compare(h.Final) != Ahead {
		t.Error("a legacy final position does not compare by LSN")
	}

	const history = `{"epoch":9,"kind":"failover","new_primary":"n2","reason":"x",` +
		`"old_position":{"lsn":"0/5000000","timeline":2},"new_position":{"lsn":"0/4FFFF00","timeline":2},"data_loss_bytes":256}`
	var e HistoryEntry
	if err := json.Unmarshal([]byte(history), &e); err != nil {
		t.Fatal(err)
	}
	if lag, _ := e.NewPosition.LagTo(e.OldPosition); lag != 256 || e.DataLossBytes != 256 {
		t.Errorf("legacy history entry decoded as %+v", e)
	}
}

// A promotion record (the leader key's value) written by an earlier
// version, with untagged positions, decodes as PostgreSQL's; a new one
// still carries the lsn and timeline fields that version reads.
func TestPromotionPositionsJSON(t *testing.T) {
	const legacy = `{"kind":"failover","lost":7,"old_primary":"n1",` +
		`"old_position":{"lsn":"0/5000000","timeline":2},"new_position":{"lsn":"0/4FFFF00","timeline":2},"done":["key"]}`
	var p Promotion
	if err := json.Unmarshal([]byte(legacy), &p); err != nil {
		t.Fatal(err)
	}
	if p.OldPosition != PGPosition(2, 0x5000000) || p.NewPosition != PGPosition(2, 0x4FFFF00) || !p.Has(StepKey) {
		t.Fatalf("legacy promotion record decoded as %+v", p)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var old struct {
		OldPosition struct {
			LSN      LSN    `json:"lsn"`
			Timeline uint32 `json:"timeline"`
		} `json:"old_position"`
	}
	if err := json.Unmarshal(b, &old); err != nil || old.OldPosition.LSN != 0x5000000 || old.OldPosition.Timeline != 2 {
		t.Errorf("old_position in %s as an earlier version reads it: %+v, %v", b, old.OldPosition, err)
	}
	var back Promotion
	if err := json.Unmarshal(b, &back); err != nil || back.OldPosition != p.OldPosition || back.NewPosition != p.NewPosition {
		t.Errorf("round trip %s = %+v, %v", b, back, err)
	}
	if b, _ := json.Marshal(Promotion{}); strings.Contains(string(b), "position") {
		t.Errorf("zero positions written: %s", b)
	}
}

// A new handoff also carries final_lsn, which agents of earlier versions
// wait for during a rolling upgrade.
func TestHandoffJSON(t *testing.T) {
	h := Handoff{Target: "n2", Final: PGPosition(2, 0x5000028), Epoch: 7}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var old struct {
		FinalLSN LSN `json:"final_lsn"`
	}
	if err := json.Unmarshal(b, &old); err != nil || old.FinalLSN != 0x5000028 {
		t.Errorf("final_lsn in %s: %v, %v", b, old.FinalLSN, err)
	}
	var back Handoff
	if err := json.Unmarshal(b, &back); err != nil || back != h {
		t.Errorf("round trip %s = %+v, %v", b, back, err)
	}
	m := Member{Name: "n1", Position: PGPosition(2, 0x10), Received: PGPosition(2, 0x20)}
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var mb Member
	if err := json.Unmarshal(b, &mb); err != nil || mb.Position != m.Position || mb.Received != m.Received || !mb.Replayed.IsZero() {
		t.Errorf("member round trip %s = %+v, %v", b, mb, err)
	}
	if strings.Contains(string(b), `"replayed"`) {
		t.Errorf("zero replayed position written: %s", b)
	}
}
