package postgres

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hamgr/hamgr/cluster"
)

func validOptions() Options {
	return Options{
		Name: "n1", DataDir: "/var/lib/hamgr/n1", BinDir: testBinDir, ListenHost: "127.0.0.1",
		Port: 5432, Superuser: "postgres", Replication: "replicator", ReplicationPassword: "x",
	}
}

func TestNewValidates(t *testing.T) {
	requirePG(t)
	if _, err := New(validOptions()); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	cases := map[string]func(*Options){
		"name with space":     func(o *Options) { o.Name = "n 1" },
		"empty name":          func(o *Options) { o.Name = "" },
		"relative data dir":   func(o *Options) { o.DataDir = "data" },
		"no binaries":         func(o *Options) { o.BinDir = os.TempDir() },
		"bad port":            func(o *Options) { o.Port = 70000 },
		"no way to connect":   func(o *Options) { o.ListenHost = "" },
		"no replication pw":   func(o *Options) { o.ReplicationPassword = "" },
		"newline in password": func(o *Options) { o.ReplicationPassword = "a\nb" },
		"reserved parameter":  func(o *Options) { o.Parameters = map[string]string{"Port": "1"} },
		"reserved sync names": func(o *Options) { o.Parameters = map[string]string{"synchronous_standby_names": "*"} },
		"reserved wal_level":  func(o *Options) { o.Parameters = map[string]string{"wal_level": "logical"} },
		"bad parameter name":  func(o *Options) { o.Parameters = map[string]string{"a=b": "1"} },
		"relative socket dir": func(o *Options) { o.SocketDir = "sock" },
		"no replication role": func(o *Options) { o.Replication = "" },
	}
	for name, mutate := range cases {
		o := validOptions()
		mutate(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", name, o)
		} else if strings.Contains(err.Error(), "a\nb") {
			t.Errorf("%s: error leaks the password: %v", name, err)
		}
	}
	p, _ := New(validOptions())
	if p.opts.LogFile != "/var/lib/hamgr/n1.log" || p.passfile() != "/var/lib/hamgr/.n1.pgpass" {
		t.Errorf("defaults: log %q, passfile %q", p.opts.LogFile, p.passfile())
	}
}

func TestQuoting(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{conninfo("host", "h", "user", "a b", "x", "it's\\"), `host=h user='a b' x='it\'s\\'`},
		{conninfo("passfile", ""), `passfile=''`},
		{configValue(`a'b\c`), `'a''b\\c'`},
		{sqlLiteral(`a'b\c`), `E'a''b\\c'`},
		{pgpassLine(`u:1`, `p\:w`), "*:*:*:u\\:1:p\\\\\\:w\n"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
	v, ok := scramVerifier("secret")
	if !ok || !strings.HasPrefix(v, "SCRAM-SHA-256$4096:") || strings.Count(v, "$") != 2 {
		t.Errorf("scram verifier %q, %v", v, ok)
	}
	if _, ok := scramVerifier("pässwörd"); ok {
		t.Errorf("non-ASCII password must fall back")
	}
}

func TestParseControlData(t *testing.T) {
	out := `pg_control version number:            1300
Database cluster state:               in archive recovery
pg_control last modified:             Thu 26 Nov 2026 02:00:57 AM UTC
Latest checkpoint location:           0/4000060
Latest checkpoint's REDO location:    0/4000028
Latest checkpoint's TimeLineID:       1
Minimum recovery ending location:     0/404A620
Min recovery ending loc's timeline:   2
`
	cd, err := parseControlData(out)
	if err != nil {
		t.Fatal(err)
	}
	if cd.State != "in archive recovery" || cd.Checkpoint != 0x4000060 || cd.CheckpointTLI != 1 {
		t.Errorf("parsed %+v", cd)
	}
	if got, want := cd.Position(), cluster.PGPosition(2, 0x404A620); got != want {
		t.Errorf("position %+v, want %+v", got, want)
	}
	cd.MinRecovery, cd.MinRecovTLI = 0, 0
	if got, want := cd.Position(), cluster.PGPosition(1, 0x4000060); got != want {
		t.Errorf("position without min recovery %+v, want %+v", got, want)
	}
	if _, err := parseControlData("garbage"); err == nil {
		t.Errorf("garbage parsed")
	}
}

func TestDivergedFromTimelineHistory(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := &Postgres{opts: Options{DataDir: dir}, log: slog.New(slog.DiscardHandler)}
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, "pg_wal", name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	at := func(tli uint32, lsn string) cluster.Position {
		l, err := cluster.ParseLSN(lsn)
		if err != nil {
			t.Fatal(err)
		}
		return cluster.PGPosition(tli, l)
	}
	if got := p.diverged(at(1, "0/40B4B90")); got != "" {
		t.Fatalf("no history files: %q, want not diverged", got)
	}
	// What a replica's receiver fetched from a primary promoted at
	// 0/4018000 on timeline 1 (the reproduction of issue 7, point 3).
	write("00000002.history", "1\t0/4018000\tno recovery target specified\n")
	cases := []struct {
		pos  cluster.Position
		want string
	}{
		{at(1, "0/40B4B90"), "timeline 2 forked off timeline 1 at 0/4018000, before this server's position 0/40B4B90"},
		{at(1, "0/4018000"), ""}, // exactly at the fork: it can follow
		{at(1, "0/3000000"), ""},
		{at(2, "0/5000000"), ""}, // already on the newest timeline
	}
	for _, c := range cases {
		if got := p.diverged(c.pos); got != c.want {
			t.Errorf("diverged(%v) = %q, want %q", c.pos, got, c.want)
		}
	}
	// A newer timeline whose history skips this server's (a sibling branch).
	write("00000004.history", "1\t0/3000000\tx\n3\t0/6000000\ty\n")
	if got := p.diverged(at(2, "0/5000000")); !strings.Contains(got, "does not contain this server's timeline 2") {
		t.Errorf("sibling timeline: %q", got)
	}

	// The fork point of a position's own timeline comes from its
	// history file, so that Compare tells a diverged position apart.
	on2 := p.withFork(at(2, "0/5000000"))
	if on2 != at(2, "0/5000000").WithFork(1, 0x4018000) {
		t.Errorf("withFork on timeline 2 = %+v", on2)
	}
	if o := at(1, "0/40B4B90").Compare(on2); o != cluster.Diverged {
		t.Errorf("timeline 1 past the fork vs timeline 2: %s, want diverged", o)
	}
	if o := at(1, "0/4018000").Compare(on2); o != cluster.Behind {
		t.Errorf("timeline 1 at the fork vs timeline 2: %s, want behind", o)
	}
	if on4 := p.withFork(at(4, "0/7000000")); on4 != at(4, "0/7000000").WithFork(3, 0x6000000) {
		t.Errorf("withFork on timeline 4 = %+v, want its parent 3", on4)
	}
	if on3 := p.withFork(at(3, "0/7000000")); on3 != at(3, "0/7000000") {
		t.Errorf("withFork without a history file = %+v", on3)
	}
}

// A replica whose receiver is gone takes the timeline of the WAL segment
// that holds its position when the control file's lags behind.
func TestSegmentTimeline(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pg_wal"), 0o700); err != nil {
		t.Fatal(err)
	}
	p := &Postgres{opts: Options{DataDir: dir}, log: slog.New(slog.DiscardHandler)}
	for _, name := range []string{"000000010000000000000004", "000000010000000000000005", "000000020000000000000005",
		"000000030000000100000000.partial", "00000002.history"} {
		if err := os.WriteFile(filepath.Join(dir, "pg_wal", name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const seg16MB = 16 << 20
	for _, c := range []struct {
		lsn  cluster.LSN
		want uint32
	}{
		{0x5000100, 2},    // segment 5 exists on timelines 1 and 2
		{0x4FFFFFF, 1},    // segment 4 on timeline 1 only
		{0x5000000, 1},    // the byte before it is in segment 4
		{0x1_00000100, 3}, // a partial segment of log 1
		{0x6000100, 0},    // no file
		{0, 0},
	} {
		if got := p.segmentTimeline(c.lsn, seg16MB); got != c.want {
			t.Errorf("segmentTimeline(%s) = %d, want %d", c.lsn, got, c.want)
		}
	}
	if got := p.segmentTimeline(0x5000100, 0); got != 0 {
		t.Errorf("segmentTimeline without a segment size = %d", got)
	}
}

func TestParseWALEndAndDivergence(t *testing.T) {
	end, ok := parseWALEnd("pg_waldump: error: error in WAL record at 0/1526058: invalid record length at 0/15261F0: wanted 24, got 0\n")
	if !ok || end.String() != "0/15261F0" {
		t.Errorf("parseWALEnd = %s %v, want 0/15261F0", end, ok)
	}
	if _, ok := parseWALEnd("pg_waldump: error: could not find file \"000000010000000000000002\": No such file or directory\n"); ok {
		t.Error("parseWALEnd found an end in a missing-file error")
	}
	out := "pg_rewind: servers diverged at WAL location 0/3000148 on timeline 1\npg_rewind: rewinding from last common checkpoint at 0/2000060 on timeline 1\npg_rewind: Done!\n"
	if got := parseDivergence(out); got.String() != "0/3000148" {
		t.Errorf("parseDivergence = %s, want 0/3000148", got)
	}
	if got := parseDivergence("pg_rewind: no rewind required\n"); got != 0 {
		t.Errorf("parseDivergence(no rewind required) = %s, want 0", got)
	}
}

// lsnOf and tlOf read a PostgreSQL position's LSN and timeline.
func lsnOf(p cluster.Position) cluster.LSN { _, lsn, _ := p.PostgreSQL(); return lsn }

func tlOf(p cluster.Position) uint32 { tl, _, _ := p.PostgreSQL(); return tl }
