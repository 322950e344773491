package writeclient_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinDir holds the PostgreSQL 15 server binaries; HAMGR_PG_BIN overrides.
func pgBinDir() string {
	if d := os.Getenv("HAMGR_PG_BIN"); d != "" {
		return d
	}
	return "/usr/lib/postgresql/15/bin"
}

const testPassword = "writeclient-test-pw"

// pgServer is one throwaway PostgreSQL instance owned by a test.
type pgServer struct {
	t       *testing.T
	bin     string
	dir     string // temp root (owned by the postgres OS user when root)
	data    string
	port    int
	cred    *syscall.Credential // nil when not running as root
	logFile *os.File

	cmd    *exec.Cmd
	exited chan struct{}
}

// freePort returns a port nothing listens on (bound on 127.0.0.1:0 and
// closed again).
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("reserve port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startPG initdbs and starts a PostgreSQL server on 127.0.0.1, skipping the
// test if the binaries (or, as root, the postgres OS user) are absent.
func startPG(t *testing.T) *pgServer {
	t.Helper()
	bin := pgBinDir()
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Skipf("PostgreSQL binaries not found in %s (set HAMGR_PG_BIN): %v", bin, err)
		}
	}
	s := &pgServer{t: t, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("running as root but no postgres OS user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	dir, err := os.MkdirTemp("", "hamgr-writeclient-pg-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir, s.data = dir, filepath.Join(dir, "data")
	t.Cleanup(func() {
		s.stop(syscall.SIGQUIT)
		if s.logFile != nil {
			s.logFile.Close()
		}
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "postgres.log")); err == nil {
				t.Logf("postgres.log:\n%s", b)
			}
		}
		os.RemoveAll(dir)
	})
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(testPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s.cred != nil {
		for _, p := range []string{dir, pwfile} {
			if err := os.Chown(p, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
				t.Fatal(err)
			}
		}
	}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", s.data, "-U", "postgres",
		"--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile="+pwfile,
		"-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.logFile, err = os.OpenFile(filepath.Join(dir, "postgres.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	s.port = freePort(t)
	s.start()
	s.waitReady()
	return s
}

// addr is the server's "host:port".
func (s *pgServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", s.port) }

// start launches the postmaster (crash recovery runs if it was killed).
func (s *pgServer) start() {
	s.t.Helper()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", s.data,
		"-p", strconv.Itoa(s.port),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=off",
		"-c", "logging_collector=off",
		"-c", "max_connections=20")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = s.logFile, s.logFile
	// Pdeathsig: never leave a postmaster behind if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start postgres: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
}

// stop signals the postmaster we started (by PID) and waits for it to exit.
// SIGQUIT is PostgreSQL's immediate shutdown: no checkpoint, crash recovery
// on the next start.
func (s *pgServer) stop(sig syscall.Signal) {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.exited:
	default:
		_ = s.cmd.Process.Signal(sig)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	s.cmd = nil
}

// waitReady polls until the server accepts an authenticated connection.
func (s *pgServer) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=1",
		s.port, testPassword)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			_ = conn.Close(ctx)
			cancel()
			return
		}
		cancel()
		select {
		case <-s.exited:
			s.t.Fatalf("postgres exited while waiting for it to be ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("postgres not ready after 30s: %v", err)
		}
		<-tick.C
	}
}
