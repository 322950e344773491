// Command footprint measures what an idle hamgr agent costs: it starts a
// local 3-member cluster (embedded etcd, one hamgr agent and PostgreSQL per
// member; package localcluster) at the default timing, lets it settle,
// and then samples each agent process over an idle window:
//
//	go run ./integration/cmd/footprint -idle 60s
//
// For each agent it reports the CPU time (utime + stime from
// /proc/PID/stat) per idle minute, its resident set size (VmRSS from
// /proc/PID/status: at the end and the largest seen, sampled every second)
// and its proportional set size (Pss from /proc/PID/smaps_rollup, which
// divides the pages it shares with the other agents, which run the same
// binary); then the median, min and max over the agents. The embedded etcd
// runs in this process, together with the fault proxies localcluster puts
// between each agent and etcd and the sampling itself: its CPU per idle
// minute is reported as an upper bound of etcd's.
//
// The report goes to stdout, progress to stderr. Flags: -idle, -settle,
// -profile default|fast, -hamgr (default: go build -tags agentonly
// ./cmd/hamgr, the production build, into a temporary directory), -tags, -bin-dir, -keep-dir, -v.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// options are the command-line flags.
type options struct {
	idle, settle time.Duration
	timing       cluster.DynamicConfig
	profile      string
	hamgr        string
	tags         string
	binDir       string
	engine       string
	eng          localcluster.Engine
	keepDir      bool
	verbose      bool
}

func main() {
	var o options
	flag.DurationVar(&o.idle, "idle", time.Minute, "idle window over which the agents are sampled")
	flag.DurationVar(&o.settle, "settle", 30*time.Second, "wait after the cluster is healthy before the window starts")
	flag.StringVar(&o.profile, "profile", "default", "timing profile: default or fast")
	flag.StringVar(&o.hamgr, "hamgr", "", "hamgr binary (default: go build -tags $tags ./cmd/hamgr)")
	flag.StringVar(&o.tags, "tags", "agentonly", "build tags for the default hamgr binary: agentonly is the production build (no embedded etcd server); -tags '' measures the full one")
	flag.StringVar(&o.binDir, "bin-dir", "/usr/lib/postgresql/15/bin", "PostgreSQL binaries")
	flag.StringVar(&o.engine, "engine", "postgresql", "database engine: postgresql, or mariadb (the system's /usr/sbin/mariadbd)")
	flag.BoolVar(&o.keepDir, "keep-dir", false, "keep the cluster directory")
	flag.BoolVar(&o.verbose, "v", false, "log the cluster's progress")
	flag.Parse()
	switch o.profile {
	case "default":
		o.timing = localcluster.DefaultTiming
	case "fast":
		o.timing = localcluster.FastTiming
	default:
		fmt.Fprintf(os.Stderr, "footprint: -profile %q: want default or fast\n", o.profile)
		os.Exit(2)
	}
	switch o.engine {
	case "postgresql":
		o.eng = localcluster.EnginePostgreSQL
	case "mariadb":
		o.eng = localcluster.EngineMariaDB
	default:
		fmt.Fprintf(os.Stderr, "footprint: -engine %q: want postgresql or mariadb\n", o.engine)
		os.Exit(2)
	}
	if o.idle < 10*time.Second {
		fmt.Fprintln(os.Stderr, "footprint: -idle must be at least 10s")
		os.Exit(2)
	}
	level := slog.LevelInfo
	if !o.verbose {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, log); err != nil {
		fmt.Fprintln(os.Stderr, "footprint:", err)
		os.Exit(1)
	}
}

// run starts the cluster, measures and prints the report. It stops every
// process it started before returning.
func run(ctx context.Context, o options, log *slog.Logger) error {
	base, err := os.MkdirTemp("", "hamgr-footprint-")
	if err != nil {
		return err
	}
	if err := os.Chmod(base, 0o755); err != nil { // the postgres user must reach it
		return err
	}
	if !o.keepDir {
		defer os.RemoveAll(base)
	}
	bin := o.hamgr
	if bin == "" {
		bin = filepath.Join(base, "hamgr")
		fmt.Fprintln(os.Stderr, "building hamgr")
		out, err := exec.CommandContext(ctx, "go", "build", "-tags", o.tags, "-o", bin, "github.com/hamgr/hamgr/cmd/hamgr").CombinedOutput()
		if err != nil {
			return fmt.Errorf("build hamgr (run from the hamgr module or pass -hamgr): %w\n%s", err, out)
		}
	}
	fmt.Fprintln(os.Stderr, "starting a 3-member cluster in", base)
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	c, err := localcluster.Start(sctx, localcluster.Options{Dir: filepath.Join(base, "c"), HamgrBin: bin,
		BinDir: o.binDir, Timing: o.timing, Logger: log, Engine: o.eng})
	cancel()
	if err != nil {
		return fmt.Errorf("start the cluster: %w", err)
	}
	defer c.Close()
	fmt.Fprintf(os.Stderr, "healthy; settling for %v, then sampling for %v\n", o.settle, o.idle)
	if err := sleep(ctx, o.settle); err != nil {
		return err
	}
	res, err := measure(ctx, c, o.idle)
	if err != nil {
		return err
	}
	report(os.Stdout, o, res)
	return nil
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// agentSample is one agent's measurements over the window.
type agentSample struct {
	name           string
	cpuPerMin      float64 // CPU seconds per idle minute
	rssEnd, rssMax int64   // kB
	pssEnd         int64   // kB
	startCPU       float64 // CPU seconds at the window's start
}

// result is the whole measurement.
type result struct {
	agents        []agentSample
	selfCPUPerMin float64
	window        time.Duration
	loadStart     string
	loadEnd       string
}

// measure samples every agent (and this process) over window.
func measure(ctx context.Context, c *localcluster.Cluster, window time.Duration) (result, error) {
	res := result{window: window, loadStart: loadavg()}
	pids := map[string]int{}
	for _, n := range c.Nodes {
		pid := n.AgentPID()
		if pid == 0 {
			return res, fmt.Errorf("agent %s is not running", n.Name)
		}
		pids[n.Name] = pid
		cpu, err := cpuSeconds(pid)
		if err != nil {
			return res, err
		}
		res.agents = append(res.agents, agentSample{name: n.Name, startCPU: cpu})
	}
	self0, err := cpuSeconds(os.Getpid())
	if err != nil {
		return res, err
	}
	start := time.Now()
	for time.Since(start) < window {
		if err := sleep(ctx, time.Second); err != nil {
			return res, err
		}
		for i := range res.agents {
			if rss, err := statusKB(pids[res.agents[i].name], "VmRSS"); err == nil {
				res.agents[i].rssMax = max(res.agents[i].rssMax, rss)
			}
		}
	}
	elapsed := time.Since(start)
	perMin := func(d float64) float64 { return d / elapsed.Minutes() }
	for i := range res.agents {
		a := &res.agents[i]
		pid := pids[a.name]
		cpu, err := cpuSeconds(pid)
		if err != nil {
			return res, fmt.Errorf("agent %s ended during the window: %w", a.name, err)
		}
		a.cpuPerMin = perMin(cpu - a.startCPU)
		a.rssEnd, _ = statusKB(pid, "VmRSS")
		a.pssEnd, _ = smapsKB(pid, "Pss")
	}
	self1, err := cpuSeconds(os.Getpid())
	if err != nil {
		return res, err
	}
	res.selfCPUPerMin = perMin(self1 - self0)
	res.loadEnd = loadavg()
	return res, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// cpuSeconds is pid's user plus system CPU time.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces: count from after ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unparsable /proc/" + strconv.Itoa(pid) + "/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc/" + strconv.Itoa(pid) + "/stat")
	}
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return float64(ut+st) / clockTicks, nil
}

// statusKB reads a "Key:   N kB" line of /proc/PID/status.
func statusKB(pid int, key string) (int64, error) {
	return procKB(fmt.Sprintf("/proc/%d/status", pid), key)
}

// smapsKB reads a "Key:   N kB" line of /proc/PID/smaps_rollup.
func smapsKB(pid int, key string) (int64, error) {
	return procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), key)
}

func procKB(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == key+":" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, key)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// report prints the measurement.
func report(w *os.File, o options, r result) {
	fmt.Fprintf(w, "hamgr idle footprint\n")
	fmt.Fprintf(w, "profile:  %s (ttl %v, loop_wait %v, retry_timeout %v)\n", o.profile,
		time.Duration(o.timing.TTL), time.Duration(o.timing.LoopWait), time.Duration(o.timing.RetryTimeout))
	build := "go build -tags '" + o.tags + "' ./cmd/hamgr"
	if o.hamgr != "" {
		build = o.hamgr
	}
	fmt.Fprintf(w, "binary:   %s\n", build)
	fmt.Fprintf(w, "engine:   %s\n", o.engine)
	fmt.Fprintf(w, "window:   %v idle after %v settling; load average %s at the start, %s at the end\n",
		r.window.Round(time.Second), o.settle, r.loadStart, r.loadEnd)
	fmt.Fprintf(w, "\n%-6s %14s %12s %12s %12s\n", "AGENT", "CPU s/IDLE MIN", "RSS MiB", "RSS MAX MiB", "PSS MiB")
	for _, a := range r.agents {
		fmt.Fprintf(w, "%-6s %14.3f %12.1f %12.1f %12.1f\n", a.name, a.cpuPerMin, mib(a.rssEnd), mib(a.rssMax), mib(a.pssEnd))
	}
	cpu := stats(r.agents, func(a agentSample) float64 { return a.cpuPerMin })
	rss := stats(r.agents, func(a agentSample) float64 { return mib(a.rssEnd) })
	rssMax := stats(r.agents, func(a agentSample) float64 { return mib(a.rssMax) })
	pss := stats(r.agents, func(a agentSample) float64 { return mib(a.pssEnd) })
	fmt.Fprintf(w, "%-6s %14s %12s %12s %12s\n", "median", f3(cpu[1]), f1(rss[1]), f1(rssMax[1]), f1(pss[1]))
	fmt.Fprintf(w, "%-6s %14s %12s %12s %12s\n", "min", f3(cpu[0]), f1(rss[0]), f1(rssMax[0]), f1(pss[0]))
	fmt.Fprintf(w, "%-6s %14s %12s %12s %12s\n", "max", f3(cpu[2]), f1(rss[2]), f1(rssMax[2]), f1(pss[2]))
	fmt.Fprintf(w, "\nthis process (embedded etcd, the agents' fault proxies, the sampling): %.3f CPU s/idle min\n", r.selfCPUPerMin)
}

func mib(kb int64) float64 { return float64(kb) / 1024 }
func f1(v float64) string  { return strconv.FormatFloat(v, 'f', 1, 64) }
func f3(v float64) string  { return strconv.FormatFloat(v, 'f', 3, 64) }

// stats returns min, median and max of f over the agents.
func stats(as []agentSample, f func(agentSample) float64) [3]float64 {
	v := make([]float64, len(as))
	for i, a := range as {
		v[i] = f(a)
	}
	sort.Float64s(v)
	if len(v) == 0 {
		return [3]float64{}
	}
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return [3]float64{v[0], med, v[len(v)-1]}
}
