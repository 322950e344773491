package config

import (
	"bytes"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secret = "hunter2-s3cr3t"

// writeSecret writes secret to a new file in dir with exactly mode
// (chmod after the write, so the umask does not interfere).
func writeSecret(t *testing.T, dir, name string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func captureLog() (*slog.Logger, *bytes.Buffer) {
	var b bytes.Buffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

// Every reader of a password or token refuses a file others may read or
// write, naming key, file, mode and the chmod; owner-only and group modes
// are read.
func TestReadSecretModes(t *testing.T) {
	dir := t.TempDir()
	readers := []struct {
		key  string
		read func(path string) (string, error)
	}{
		{"etcd.password_file", func(p string) (string, error) { return Etcd{PasswordFile: p}.Password() }},
		{"postgresql.superuser.password_file", func(p string) (string, error) {
			return PostgreSQL{Superuser: User{PasswordFile: p}}.SuperuserPassword()
		}},
		{"postgresql.replication.password_file", func(p string) (string, error) {
			return PostgreSQL{Replication: User{PasswordFile: p}}.ReplicationPassword()
		}},
		{"api.token_file", func(p string) (string, error) { return API{TokenFile: p}.Token() }},
		{"--etcd-password-file", func(p string) (string, error) { return ReadPassword("--etcd-password-file", p) }},
	}
	tests := []struct {
		mode fs.FileMode
		want string // "" accepted, else the error's text after "KEY: FILE "
	}{
		{0o600, ""},
		{0o400, ""},
		{0o640, ""},
		{0o660, ""},
		{0o604, "has mode 0604 (-rw----r--): other users can read or change the secret in it; refusing to use it: chmod 600 "},
		{0o602, "has mode 0602 (-rw-----w-): other users"},
		{0o644, "has mode 0644 (-rw-r--r--): other users"},
		{0o666, "has mode 0666 (-rw-rw-rw-): other users"},
	}
	for _, r := range readers {
		for _, tt := range tests {
			p := writeSecret(t, dir, strings.TrimLeft(r.key, "-")+tt.mode.String(), tt.mode)
			got, err := r.read(p)
			if tt.want == "" {
				if err != nil || got != secret {
					t.Errorf("%s mode %04o: %q, %v; want the secret", r.key, tt.mode, got, err)
				}
				continue
			}
			want := r.key + ": " + p + " " + tt.want
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s mode %04o:\n got %v\nwant %s...", r.key, tt.mode, err, want)
			}
			if err != nil && tt.mode == 0o604 && !strings.Contains(err.Error(), "chmod 600 "+p) {
				t.Errorf("%s: no chmod for the file: %v", r.key, err)
			}
			if got != "" || (err != nil && strings.Contains(err.Error(), secret)) {
				t.Errorf("%s mode %04o: the secret leaked: %q, %v", r.key, tt.mode, got, err)
			}
		}
	}
	if got, err := (API{}).Token(); got != "" || err != nil {
		t.Errorf("no token file: %q, %v", got, err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (API{TokenFile: empty}).Token(); err == nil || !strings.Contains(err.Error(), "api.token_file "+empty+" is empty") {
		t.Errorf("empty token file: %v", err)
	}
	if _, err := ReadPassword("etcd.password_file", dir); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("directory: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 70<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPassword("etcd.password_file", big); err == nil || !strings.Contains(err.Error(), "larger than 64kB") {
		t.Errorf("large file: %v", err)
	}
}

// CheckSecrets at start: others' access refuses (every such file in one
// error), the group's warns once per file, TLS keys only warn; the secret
// is in neither.
func TestCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	c := mustParse(t, minimal)
	c.Etcd.Username = "u"
	c.Etcd.PasswordFile = writeSecret(t, dir, "etcd.pw", 0o644)
	c.API.TokenFile = writeSecret(t, dir, "api.token", 0o606)
	c.PostgreSQL.Superuser.PasswordFile = writeSecret(t, dir, "super.pw", 0o640)
	c.PostgreSQL.Replication.PasswordFile = writeSecret(t, dir, "repl.pw", 0o600)
	c.Etcd.TLS.CertFile, c.Etcd.TLS.KeyFile = "/c.pem", writeSecret(t, dir, "etcd.key", 0o644)
	c.API.TLS.CertFile, c.API.TLS.KeyFile = "/c.pem", writeSecret(t, dir, "api.key", 0o600)

	log, buf := captureLog()
	err := c.CheckSecrets(log)
	if err == nil {
		t.Fatal("CheckSecrets accepted world-readable secret files")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 ||
		!strings.HasPrefix(lines[0], "etcd.password_file: "+c.Etcd.PasswordFile+" has mode 0644 (-rw-r--r--)") ||
		!strings.HasSuffix(lines[0], "chmod 600 "+c.Etcd.PasswordFile+" (and chown it to the user hamgr runs as)") ||
		!strings.HasPrefix(lines[1], "api.token_file: "+c.API.TokenFile+" has mode 0606 (-rw----rw-)") {
		t.Errorf("refusals:\n%v", err)
	}
	logged := buf.String()
	if n := strings.Count(logged, "level=WARN"); n != 2 {
		t.Errorf("want 2 warnings (group-readable password, world-readable TLS key), got %d:\n%s", n, logged)
	}
	for _, w := range []string{
		"key=postgresql.superuser.password_file file=" + c.PostgreSQL.Superuser.PasswordFile + ` mode="0640 (-rw-r-----)" fix="chmod 600 ` + c.PostgreSQL.Superuser.PasswordFile + `"`,
		"key=etcd.tls.key_file file=" + c.Etcd.TLS.KeyFile + ` mode="0644 (-rw-r--r--)"`,
	} {
		if !strings.Contains(logged, w) {
			t.Errorf("log lacks %q:\n%s", w, logged)
		}
	}
	if strings.Contains(logged, secret) || strings.Contains(err.Error(), secret) {
		t.Error("a secret leaked into the log or the error")
	}

	// Fixed: no error; the group-readable file still warns; a missing file
	// is left to CheckPaths.
	for _, p := range []string{c.Etcd.PasswordFile, c.API.TokenFile, c.Etcd.TLS.KeyFile} {
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.Etcd.TLS.CAFile = filepath.Join(dir, "missing-ca.pem")
	log, buf = captureLog()
	if err := c.CheckSecrets(log); err != nil {
		t.Errorf("after chmod: %v", err)
	}
	if n := strings.Count(buf.String(), "level=WARN"); n != 1 || !strings.Contains(buf.String(), "postgresql.superuser.password_file") {
		t.Errorf("after chmod, want the one group warning:\n%s", buf)
	}
}
