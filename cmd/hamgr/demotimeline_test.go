//go:build !agentonly

package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

func TestOutageAfterKill(t *testing.T) {
	ms := time.Millisecond
	kill := time.Now()
	gap := func(from, to time.Duration, toPort int) writeclient.Gap {
		return writeclient.Gap{Start: kill.Add(from), End: kill.Add(to), Duration: to - from, FromPort: 5001, ToPort: toPort}
	}
	open := func(from, to time.Duration) writeclient.Gap {
		g := gap(from, to, 0)
		g.Open = true
		return g
	}
	tests := []struct {
		name string
		gaps []writeclient.Gap
		want writeOutage
	}{
		{"last ack before the kill", []writeclient.Gap{gap(-8*ms, 5100*ms, 5002)},
			writeOutage{Kind: outageEnded, LastAck: -8 * ms, FirstAck: 5100 * ms, Port: 5002}},
		{"last ack just after the kill", []writeclient.Gap{gap(12*ms, 5100*ms, 5002)},
			writeOutage{Kind: outageEnded, LastAck: 12 * ms, FirstAck: 5100 * ms, Port: 5002}},
		{"no outage at all", nil, writeOutage{Kind: outageNone}},
		{"only hiccups before and long after the kill",
			[]writeclient.Gap{gap(-3000*ms, -2700*ms, 5001), gap(-200*ms, 0, 5001), gap(9000*ms, 9300*ms, 5002)},
			writeOutage{Kind: outageNone}},
		{"writes never resuming", []writeclient.Gap{open(-5*ms, 30*time.Second)},
			writeOutage{Kind: outageOpen, LastAck: -5 * ms, FirstAck: 30 * time.Second}},
		{"writes never resuming, last ack just after the kill", []writeclient.Gap{open(15*ms, 30*time.Second)},
			writeOutage{Kind: outageOpen, LastAck: 15 * ms, FirstAck: 30 * time.Second}},
		{"hiccups around the outage are not it",
			[]writeclient.Gap{gap(-1000*ms, -800*ms, 5001), gap(20*ms, 5200*ms, 5003), gap(6000*ms, 6300*ms, 5003)},
			writeOutage{Kind: outageEnded, LastAck: 20 * ms, FirstAck: 5200 * ms, Port: 5003}},
		{"a gap beginning long after the kill is not the kill's",
			[]writeclient.Gap{gap(killWindow+ms, killWindow+time.Second, 5002)},
			writeOutage{Kind: outageNone}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := outageAfterKill(tt.gaps, kill)
			if got != tt.want {
				t.Fatalf("outageAfterKill = %+v, want %+v", got, tt.want)
			}
			if got.Kind != outageNone && got.Unavailable() != tt.want.FirstAck-tt.want.LastAck {
				t.Errorf("Unavailable() = %v, want %v", got.Unavailable(), tt.want.FirstAck-tt.want.LastAck)
			}
		})
	}
}

// demoReport is a report as a default-timing run produces it.
func demoReport(w writeOutage) failoverReport {
	return failoverReport{
		Timeline: localcluster.Timeline{Old: "n1", New: "n2", Epoch: 2426, Detected: 10386 * time.Millisecond,
			Elected: 10391 * time.Millisecond, Promoted: 10494 * time.Millisecond, Following: 11441 * time.Millisecond},
		Writes:  w,
		Members: map[int]string{5001: "n1", 5002: "n2", 5003: "n3"},
		Acked:   245,
		History: &cluster.HistoryEntry{Epoch: 2426, Kind: "failover", OldPrimary: "n1", NewPrimary: "n2",
			Reason: "leader key of epoch 4 was lost", Steps: []cluster.Step{
				{Name: "elect", Duration: cluster.Duration(10 * time.Millisecond)},
				{Name: "promote", Duration: cluster.Duration(110 * time.Millisecond)}},
			Evidence: &cluster.Evidence{Kind: cluster.EvidenceRefused, Detail: "127.0.0.1:5001 refused the connection"}},
	}
}

func TestWriteFailoverReport(t *testing.T) {
	var b bytes.Buffer
	// The reported bug: the last acknowledgement landed 12ms after the kill.
	if err := writeFailoverReport(&b, demoReport(writeOutage{Kind: outageEnded, LastAck: 12 * time.Millisecond,
		FirstAck: 10433 * time.Millisecond, Port: 5002})); err != nil {
		t.Fatal(err)
	}
	want := `
Failover timeline (from the kill of n1):
  leader loss detected  +10.39s  (leader key of n1 expired)
  new leader elected    +10.39s  (n2 took the leader key, epoch 2426)
  promoted              +10.49s  (n2 answers /primary 200)
  replica following     +11.44s  (the other replica streams from n2)
  first write accepted  +10.43s  (on n2; write unavailability 10.42s, from the last acknowledgement at +10ms)

245 writes acknowledged, 0 of them lost (asynchronous replication loses at most what had not reached a replica)
history: epoch 2426 failover n1 -> n2: leader key of epoch 4 was lost; steps: elect 10ms promote 110ms
evidence that n1 took no more writes: refused: 127.0.0.1:5001 refused the connection

`
	if got := b.String(); got != want {
		t.Errorf("report:\n%s\nwant:\n%s", got, want)
	}
}

func TestFirstWriteRow(t *testing.T) {
	tests := []struct {
		name string
		r    failoverReport
		want string
	}{
		{"last ack before the kill",
			demoReport(writeOutage{Kind: outageEnded, LastAck: -8 * time.Millisecond, FirstAck: 5104 * time.Millisecond, Port: 5003}),
			"first write accepted  +5.1s    (on n3; write unavailability 5.11s, from the last acknowledgement at -10ms)"},
		{"unknown port",
			demoReport(writeOutage{Kind: outageEnded, LastAck: -8 * time.Millisecond, FirstAck: 5104 * time.Millisecond, Port: 7777}),
			"(on port 7777; write unavailability 5.11s"},
		{"writes never resuming",
			demoReport(writeOutage{Kind: outageOpen, LastAck: -3 * time.Millisecond, FirstAck: 41 * time.Second}),
			"first write accepted  none     (writes had not resumed at +41s, when the demo stopped waiting; no write acknowledged for 41s, since +0s)"},
		{"no outage at all", demoReport(writeOutage{Kind: outageNone}),
			"first write accepted  -        (no write outage: acknowledgements never paused around the kill)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := writeFailoverReport(&b, tt.r); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), tt.want) {
				t.Errorf("report lacks %q:\n%s", tt.want, b.String())
			}
			if strings.Contains(b.String(), "first write accepted  +0s") {
				t.Errorf("report claims the first write came at the kill:\n%s", b.String())
			}
		})
	}
}

func TestWriteFailoverReportUnverified(t *testing.T) {
	r := demoReport(writeOutage{Kind: outageNone})
	r.VerifyErr, r.History = errors.New("connection refused"), nil
	var b bytes.Buffer
	if err := writeFailoverReport(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "245 writes acknowledged; could not verify them: connection refused") {
		t.Errorf("report does not say the writes were not verified:\n%s", b.String())
	}
	if strings.Contains(b.String(), "lost") || strings.Contains(b.String(), "history:") {
		t.Errorf("report claims a loss count or history it does not have:\n%s", b.String())
	}
}

func TestSigned(t *testing.T) {
	for d, want := range map[time.Duration]string{
		12 * time.Millisecond: "+10ms", -8 * time.Millisecond: "-10ms", 0: "+0s", 1234 * time.Millisecond: "+1.23s", -2 * time.Second: "-2s",
	} {
		if got := signed(d); got != want {
			t.Errorf("signed(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestLossCause: a take-over on proof of death is not reported as an
// expired key.
func TestLossCause(t *testing.T) {
	r := demoReport(writeOutage{Kind: outageNone})
	if got, want := lossCause(r), "leader key of n1 expired"; got != want {
		t.Errorf("lossCause with evidence refused = %q, want %q", got, want)
	}
	r.History.Evidence = &cluster.Evidence{Kind: cluster.EvidenceRefusedEarly, Detail: "ports refused"}
	if got, want := lossCause(r), "n1's ports refused: its leader key taken over before it expired"; got != want {
		t.Errorf("lossCause with evidence refused-early = %q, want %q", got, want)
	}
	r.History = nil
	if got, want := lossCause(r), "leader key of n1 expired"; got != want {
		t.Errorf("lossCause without history = %q, want %q", got, want)
	}
}
