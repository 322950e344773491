// Command drill is hamgr's failover drill: it starts local 3-member
// clusters (embedded etcd, one hamgr agent and PostgreSQL per member),
// injects faults into the primary under a steady write load and reports how
// long writes were unavailable and how many acknowledged writes were lost;
// it also measures the per-commit latency of asynchronous and synchronous
// replication.
//
//	go run ./integration/cmd/drill -n 5 -profile both \
//		-faults node-crash,sync-node-crash,postmaster-crash,switchover,commit-latency
//
// Rows (-faults): node-crash (asynchronous), sync-node-crash (the same with
// synchronous_mode=on), postmaster-crash, switchover (operator switchover to
// the best replica), etcd-quorum-loss and etcd-full-outage (a 3-member
// etcd loses its quorum, or every member, for 30 s) and their failsafe-
// twins (the same with failsafe_mode on), and commit-latency (=
// commit-latency-async and commit-latency-sync).
//
// For every timing profile and row, one cluster is started and shared by
// the runs of that row (a member killed by a run is restarted and rejoins,
// by pg_rewind, before the next run, or is re-cloned if it does not; a
// cluster that becomes unusable is replaced). Each fault run writes
// through a multi-host, target_session_attrs=read-write connection every
// 10 ms (package writeclient), waits for 100 acknowledged writes, injects
// the fault, waits for 50 more acknowledged writes, and then checks that
// every acknowledged write is still on the primary. Each commit latency run
// times -latency-writes single-row INSERTs, back to back, over one
// connection to the primary.
//
// By default (-settings production) every member runs with PostgreSQL's
// shipped durability settings (fsync on) and each new cluster is loaded
// with pgbench data (-scale, 20 by default: about 320 MB) before its first
// run; -settings test runs them as the test suite does (fsync off).
//
// -engine mariadb runs the same drill on MariaDB (the system's mariadbd,
// localcluster.EngineMariaDB): rows node-crash, sync-node-crash
// (semi-synchronous replication), postmaster-crash (mysqld killed, agent
// alive) and switchover; the write client tries every member
// in order and keeps the first writable one (writeclient.MySQL), as a user
// without READ_ONLY ADMIN; -settings and -scale do not apply.
//
// The report goes to stdout, progress to stderr. Cluster directories (with
// the agents' logs in <dir>/n*/agent.log) are removed at the end unless
// -keep-dir is given or a run in them misbehaved.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/localcluster"
)

// profile is a named timing configuration.
type profile struct {
	Name   string
	Timing cluster.DynamicConfig
}

// profiles are the timing profiles -profile selects from.
var profiles = []profile{
	{Name: "default", Timing: localcluster.DefaultTiming},
	{Name: "fast", Timing: localcluster.FastTiming},
}

// maxClusters bounds the clusters started for one profile × fault
// (the first one plus replacements of unusable ones).
const maxClusters = 3

func main() {
	os.Exit(mainErr())
}

// options are the command-line flags.
type options struct {
	runs     int
	faults   []fault
	profiles []profile
	binDir   string
	hamgr    string
	jsonFile string
	keepDir  bool
	verbose  bool
	// latencyWrites is the number of INSERTs of one commit latency run.
	latencyWrites int
	// settings are the PostgreSQL settings and data of every cluster.
	settings settings
	// engine is the members' database (-engine).
	engine localcluster.Engine
}

// mariadbFaults are the rows the drill runs on MariaDB (-engine mariadb):
// postmaster-crash then kills mysqld.
var mariadbFaults = map[string]bool{"node-crash": true, "postmaster-crash": true, "switchover": true, "sync-node-crash": true}

func mainErr() int {
	var o options
	var faultList, profileName, settingsName, engineName string
	var scale int
	flag.IntVar(&o.runs, "n", 5, "runs per fault and profile")
	flag.StringVar(&faultList, "faults", "node-crash,postmaster-crash", "comma-separated faults and measurements: "+strings.Join(faultNames(), ", "))
	flag.IntVar(&o.latencyWrites, "latency-writes", 2000, "INSERTs per commit latency run (each run is also bounded to 2 minutes)")
	flag.StringVar(&profileName, "profile", "both", "timing profile: default, fast or both")
	flag.StringVar(&o.binDir, "bin-dir", config.DefaultBinDir, "directory holding PostgreSQL's server binaries")
	flag.StringVar(&o.hamgr, "hamgr", "", "hamgr binary (default: go build ./cmd/hamgr into a temporary directory)")
	flag.StringVar(&o.jsonFile, "json", "", "also write the raw per-run results to this file")
	flag.BoolVar(&o.keepDir, "keep-dir", false, "keep every cluster directory (agent logs in <dir>/n*/agent.log)")
	flag.BoolVar(&o.verbose, "v", false, "log the write client's connection and outage transitions")
	flag.StringVar(&settingsName, "settings", "production", "PostgreSQL settings: production (fsync on, as shipped) or test (fsync off, as the test suite runs)")
	flag.IntVar(&scale, "scale", 20, "pgbench scale factor of the data loaded into every cluster before its first run (0: none; 1 is about 16 MB)")
	flag.StringVar(&engineName, "engine", "postgresql", "database engine: postgresql, or mariadb (the system's /usr/sbin/mariadbd; rows node-crash, sync-node-crash, postmaster-crash (= mysqld crash) and switchover; -settings and -scale do not apply)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "drill: unexpected arguments %q\n", flag.Args())
		return 2
	}
	if o.runs < 1 {
		fmt.Fprintln(os.Stderr, "drill: -n must be at least 1")
		return 2
	}
	var err error
	if o.settings, err = newSettings(settingsName, scale); err != nil || scale < 0 {
		fmt.Fprintf(os.Stderr, "drill: %v (-scale must be 0 or more)\n", err)
		return 2
	}
	switch engineName {
	case "postgresql":
		o.engine = localcluster.EnginePostgreSQL
	case "mariadb":
		o.engine = localcluster.EngineMariaDB
		o.settings = settings{Name: "mariadb"}
	default:
		fmt.Fprintf(os.Stderr, "drill: unknown -engine %q (postgresql or mariadb)\n", engineName)
		return 2
	}
	if o.latencyWrites < 1 {
		fmt.Fprintln(os.Stderr, "drill: -latency-writes must be at least 1")
		return 2
	}
	seen := map[string]bool{}
	for _, name := range strings.Split(faultList, ",") {
		name = strings.TrimSpace(name)
		names := faultAliases[name]
		if names == nil {
			names = []string{name}
		}
		for _, n := range names {
			f, ok := faults[n]
			if !ok {
				fmt.Fprintf(os.Stderr, "drill: unknown fault %q (known: %s)\n", n, strings.Join(faultNames(), ", "))
				return 2
			}
			if o.engine == localcluster.EngineMariaDB && !mariadbFaults[n] {
				fmt.Fprintf(os.Stderr, "drill: fault %q is not run on MariaDB (node-crash, postmaster-crash, switchover)\n", n)
				return 2
			}
			if !seen[n] {
				seen[n] = true
				o.faults = append(o.faults, f)
			}
		}
	}
	switch profileName {
	case "both":
		o.profiles = profiles
	case "default", "fast":
		for _, p := range profiles {
			if p.Name == profileName {
				o.profiles = append(o.profiles, p)
			}
		}
	default:
		fmt.Fprintf(os.Stderr, "drill: unknown profile %q (default, fast or both)\n", profileName)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	defer runCleanups(tb) // the fenced rows' BMCs
	results, env, err := runDrill(ctx, o, log)
	if env != nil {
		writeReport(os.Stdout, *env, o, results)
	}
	if o.jsonFile != "" && env != nil {
		if jerr := writeJSON(o.jsonFile, *env, results); jerr != nil {
			log.Error("write -json file", "err", jerr)
			err = errors.Join(err, jerr)
		}
	}
	if err != nil {
		log.Error("drill failed", "err", err)
		return 1
	}
	for _, r := range results {
		if len(r.Anomalies) > 0 || r.Error != "" {
			return 1
		}
	}
	return 0
}

// environment describes where and how the drill ran.
type environment struct {
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Duration secs      `json:"duration"`
	CPUs     string    `json:"cpus"`
	Kernel   string    `json:"kernel"`
	// Postgres is the database server's version (MariaDB's with
	// -engine mariadb; the name is kept for earlier reports' readers).
	Postgres string `json:"postgres"`
	Go       string `json:"go"`
	HamgrRev string `json:"hamgr_revision"`
	HamgrBin string `json:"hamgr_binary"`
	// Settings describes the PostgreSQL settings and data (-settings).
	Settings string `json:"settings"`
	// HamgrVersion is the output of "hamgr version" for a binary given
	// with -hamgr (HamgrRev is then empty: the checkout may differ).
	HamgrVersion string `json:"hamgr_version,omitempty"`
	Dir          string `json:"dir"`
	// LoadStart and LoadEnd are /proc/loadavg at the start and the end:
	// other work on the machine skews the timings.
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
	Interrupt bool   `json:"interrupted,omitempty"`
}

// runDrill runs every profile × fault and returns the results. It stops
// every process it started before returning, also on error or interrupt.
func runDrill(ctx context.Context, o options, log *slog.Logger) ([]runResult, *environment, error) {
	version := mariadbVersion(ctx)
	if o.engine == localcluster.EngineMariaDB {
		if _, err := os.Stat(mariadbServer); err != nil {
			return nil, nil, fmt.Errorf("MariaDB server not found (%v): apt-get install mariadb-server", err)
		}
	} else {
		for _, b := range config.PostgreSQLBinaries {
			if _, err := os.Stat(filepath.Join(o.binDir, b)); err != nil {
				return nil, nil, fmt.Errorf("PostgreSQL server binaries not found (%s is missing); pass -bin-dir", filepath.Join(o.binDir, b))
			}
		}
		version = postgresVersion(ctx, o.binDir)
	}
	env := &environment{Command: commandLine(), Started: time.Now(), CPUs: nproc(), Kernel: kernel(),
		Postgres: version, Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH,
		HamgrRev: gitRevision(ctx), LoadStart: loadavg(), Settings: o.settings.String()}
	defer func() { env.Duration, env.LoadEnd = secs(time.Since(env.Started)), loadavg() }()

	base, err := os.MkdirTemp("", "hamgr-drill-")
	if err != nil {
		return nil, env, err
	}
	env.Dir = base
	// The postgres user must reach the cluster directories below base.
	if err := os.Chmod(base, 0o755); err != nil {
		return nil, env, err
	}
	keepBase := o.keepDir
	defer func() {
		if !keepBase {
			os.RemoveAll(base)
		}
	}()
	env.HamgrBin = o.hamgr
	if env.HamgrBin == "" {
		env.HamgrBin = filepath.Join(base, "bin", "hamgr")
		log.Info("building hamgr", "out", env.HamgrBin)
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		out, err := exec.CommandContext(bctx, "go", "build", "-o", env.HamgrBin, "github.com/hamgr/hamgr/cmd/hamgr").CombinedOutput()
		cancel()
		if err != nil {
			return nil, env, fmt.Errorf("build hamgr (run from the hamgr module or pass -hamgr): %v\n%s", err, out)
		}
	} else {
		if _, err := os.Stat(env.HamgrBin); err != nil {
			return nil, env, fmt.Errorf("-hamgr: %w", err)
		}
		env.HamgrRev = ""
		vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := exec.CommandContext(vctx, env.HamgrBin, "version").Output()
		cancel()
		if err != nil {
			return nil, env, fmt.Errorf("-hamgr %s version: %w", env.HamgrBin, err)
		}
		env.HamgrVersion = strings.TrimSpace(string(out))
	}

	wlog := slog.New(slog.DiscardHandler)
	if o.verbose {
		wlog = log
	}
	d := &drill{hamgrBin: env.HamgrBin, binDir: o.binDir, baseDir: base, log: log, wlog: wlog, settings: o.settings, engine: o.engine}
	var results []runResult
	for _, p := range o.profiles {
		for _, f := range o.faults {
			rs, kept := d.runFault(ctx, o, p, f)
			results = append(results, rs...)
			if kept {
				keepBase = true
			}
			if ctx.Err() != nil {
				env.Interrupt = true
				return results, env, fmt.Errorf("interrupted: %w", ctx.Err())
			}
		}
	}
	return results, env, nil
}

// runFault performs the runs of one fault under one profile on a shared
// cluster, replacing it when it becomes unusable. kept reports whether a
// cluster directory was kept.
func (d *drill) runFault(ctx context.Context, o options, p profile, f fault) (results []runResult, kept bool) {
	var s *slot
	started := 0
	defer func() {
		if s != nil {
			s.close(o.keepDir, d.log)
			kept = kept || o.keepDir || s.keep
		}
	}()
	for i := 1; i <= o.runs && ctx.Err() == nil; i++ {
		if s == nil {
			if started == maxClusters {
				d.log.Error("too many clusters failed; giving up on this fault", "profile", p.Name, "fault", f.Name)
				break
			}
			started++
			var err error
			s, err = d.startSlot(ctx, p, f, started)
			if err != nil {
				d.log.Error("cluster did not start", "err", err)
				results = append(results, runResult{Profile: p.Name, Fault: f.Name, Run: i, Cluster: started,
					ClusterDir: s.dir, Error: err.Error()})
				kept = true
				s = nil
				continue
			}
		}
		var r runResult
		var usable bool
		if f.Latency {
			r, usable = d.runLatency(ctx, s, p, f, i, o.latencyWrites)
		} else {
			r, usable = d.run(ctx, s, p, f, i)
		}
		results = append(results, r)
		d.log.Info("run done", "profile", p.Name, "fault", f.Name, "run", i, "outage", time.Duration(r.Outage).Round(time.Millisecond),
			"lost", r.Lost, "old", r.OldPrimary, "new", r.NewPrimary, "anomalies", len(r.Anomalies), "err", r.Error)
		for _, a := range r.Anomalies {
			d.log.Warn("anomaly", "profile", p.Name, "fault", f.Name, "run", i, "what", a, "dir", s.dir)
		}
		if !usable && ctx.Err() == nil {
			d.log.Warn("cluster unusable; replacing it with a fresh one", "profile", p.Name, "fault", f.Name, "dir", s.dir)
			s.close(o.keepDir, d.log)
			kept = kept || o.keepDir || s.keep
			s = nil
		}
	}
	return results, kept
}

// commandLine reconstructs the command that ran the drill.
func commandLine() string {
	args := make([]string, 0, len(os.Args))
	prog := os.Args[0]
	if strings.Contains(prog, "go-build") {
		prog = "go run ./integration/cmd/drill"
	}
	args = append(args, prog)
	for _, a := range os.Args[1:] {
		if a == "" || strings.ContainsAny(a, " \t\"'$\\") {
			a = strconv.Quote(a)
		}
		args = append(args, a)
	}
	return strings.Join(args, " ")
}

// nproc is the number of CPUs available to the process (nproc(1)).
func nproc() string {
	if out, err := exec.Command("nproc").Output(); err == nil {
		return strings.TrimSpace(string(out))
	}
	return strconv.Itoa(runtime.NumCPU())
}

// kernel is the running kernel's release.
func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// loadavg is the 1, 5 and 15 minute load averages.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// postgresVersion is the output of postgres --version.
func postgresVersion(ctx context.Context, binDir string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

// mariadbServer is the MariaDB server the drill runs with -engine mariadb.
const mariadbServer = "/usr/sbin/mariadbd"

// mariadbVersion is the output of mariadbd --version.
func mariadbVersion(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, mariadbServer, "--version").Output()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(out))
}

// gitRevision describes the checkout the drill runs from ("" if unknown).
func gitRevision(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// writeJSON writes the environment and the raw results to path.
func writeJSON(path string, env environment, results []runResult) error {
	b, err := json.MarshalIndent(struct {
		Environment environment `json:"environment"`
		Runs        []runResult `json:"runs"`
	}{env, results}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// secs is a duration that marshals to JSON as seconds.
type secs time.Duration

// MarshalJSON writes the duration in seconds with millisecond precision.
func (s secs) MarshalJSON() ([]byte, error) {
	return []byte(strconv.FormatFloat(time.Duration(s).Seconds(), 'f', 3, 64)), nil
}

// String formats the duration in seconds with two decimals.
func (s secs) String() string {
	return fmt.Sprintf("%.2fs", time.Duration(s).Seconds())
}
