package writeclient

import (
	"testing"
	"time"
)

func TestStats(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		in            []time.Duration
		med, min, max time.Duration
	}{
		{nil, 0, 0, 0},
		{[]time.Duration{7 * ms}, 7 * ms, 7 * ms, 7 * ms},
		{[]time.Duration{30 * ms, 10 * ms, 20 * ms}, 20 * ms, 10 * ms, 30 * ms},
		{[]time.Duration{40 * ms, 10 * ms, 30 * ms, 20 * ms}, 25 * ms, 10 * ms, 40 * ms},
	}
	for _, tc := range cases {
		orig := append([]time.Duration(nil), tc.in...)
		med, lo, hi := Stats(tc.in)
		if med != tc.med || lo != tc.min || hi != tc.max {
			t.Errorf("Stats(%v) = %v,%v,%v want %v,%v,%v", tc.in, med, lo, hi, tc.med, tc.min, tc.max)
		}
		for i := range orig {
			if orig[i] != tc.in[i] {
				t.Errorf("Stats modified its input: %v", tc.in)
			}
		}
	}
}

// synthetic builds acks every 10ms from base, except for the given holes
// (offsets where the next ack comes late).
func synthAcks(base time.Time, offsets ...time.Duration) []ack {
	acks := make([]ack, len(offsets))
	for i, o := range offsets {
		port := 5432
		if o >= 2*time.Second {
			port = 5433 // "failed over" to another node
		}
		acks[i] = ack{id: int64(i + 1), at: base.Add(o), port: port}
	}
	return acks
}

func TestGapsAndOutageAround(t *testing.T) {
	ms := time.Millisecond
	base := time.Now()
	// Acks at 0..40ms, then a 960ms hole (40ms -> 1000ms), acks to 1020ms,
	// then a 1480ms hole (1020ms -> 2500ms) with a port change.
	acks := synthAcks(base, 0, 10*ms, 20*ms, 30*ms, 40*ms, 1000*ms, 1010*ms, 1020*ms, 2500*ms, 2510*ms)
	threshold := Options{Interval: 10 * ms}.gapThreshold() // 150ms
	if threshold != 150*ms {
		t.Fatalf("threshold %v", threshold)
	}
	longest, gaps := computeGaps(acks, threshold, false, base.Add(3*time.Second))
	if longest != 1480*ms {
		t.Errorf("longest %v", longest)
	}
	if len(gaps) != 2 {
		t.Fatalf("gaps %+v", gaps)
	}
	g := gaps[1]
	if !g.Start.Equal(base.Add(1020*ms)) || !g.End.Equal(base.Add(2500*ms)) || g.Duration != 1480*ms ||
		g.FromPort != 5432 || g.ToPort != 5433 || g.Open {
		t.Errorf("gap %+v", g)
	}
	r := Result{LongestGap: longest, Gaps: gaps}

	for _, tc := range []struct {
		name  string
		fault time.Duration
		want  time.Duration
	}{
		{"inside first gap", 500 * ms, 960 * ms},
		{"at gap start", 40 * ms, 960 * ms},
		{"at gap end", 1000 * ms, 960 * ms},
		{"inside second gap", 2 * time.Second, 1480 * ms},
		{"gap starts shortly after fault", 1005 * ms, 1480 * ms},
		{"gap starts shortly after fault, first", -500 * ms, 960 * ms},
		{"gap starts more than 2s after fault", -3 * time.Second, 0},
		{"after all gaps", 2505 * ms, 0},
	} {
		if got := r.OutageAround(base.Add(tc.fault)); got != tc.want {
			t.Errorf("%s: OutageAround(+%v) = %v, want %v", tc.name, tc.fault, got, tc.want)
		}
	}

	// Writes still failing at stop: an open trailing gap.
	longest, gaps = computeGaps(acks, threshold, true, base.Add(6*time.Second))
	last := gaps[len(gaps)-1]
	if !last.Open || last.Duration != 3490*ms || last.ToPort != 0 || longest != 3490*ms {
		t.Errorf("open gap %+v longest %v", last, longest)
	}
	if got := (Result{Gaps: gaps}).OutageAround(base.Add(4 * time.Second)); got != 3490*ms {
		t.Errorf("OutageAround in open gap = %v", got)
	}

	// No acks, or a single ack: no gaps.
	if l, g := computeGaps(nil, threshold, true, base); l != 0 || g != nil {
		t.Errorf("empty: %v %v", l, g)
	}
	if got := (Result{}).OutageAround(base); got != 0 {
		t.Errorf("empty OutageAround = %v", got)
	}
}

func TestConnString(t *testing.T) {
	o := Options{Hosts: []string{"10.0.0.1:5432", "db2:6543", "db3"}, User: "u", Password: `p'w\x`}.withDefaults()
	cs, err := o.connString()
	if err != nil {
		t.Fatal(err)
	}
	want := `host='10.0.0.1,db2,db3' port='5432,6543,5432' user='u' password='p\'w\\x' dbname='postgres' sslmode='prefer' target_session_attrs=read-write connect_timeout=1 application_name=hamgr-writeclient`
	if cs != want {
		t.Errorf("connString\n got %s\nwant %s", cs, want)
	}
	if _, err := (Options{}).connString(); err == nil {
		t.Error("no hosts: want error")
	}
	if got := (Options{Table: "s.t"}).tableIdent(); got != `"s"."t"` {
		t.Errorf("tableIdent = %s", got)
	}
}
