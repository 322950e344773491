package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
)

// Permission rules of the files that hold secrets (passwords, the API
// token, the DNS publisher's TSIG key, TLS private keys):
//
//   - a password or token file that other users (neither its owner nor its
//     group) may read or write is refused: they could read the secret, or
//     replace it with their own (a token of their choosing opens the
//     operator endpoints);
//   - one that its group may read or write is accepted with a warning, since
//     sharing it with a group (such as postgres) can be deliberate;
//   - a TLS private key file (key_file) readable or writable by group or
//     others is accepted with a warning only, since TLS tooling often
//     leaves keys 0644 and refusing would break working setups.
//
// The secret itself never appears in an error or a log line.
const (
	otherAccess fs.FileMode = 0o006
	groupAccess fs.FileMode = 0o060
	// maxSecretSize bounds what is read from a secret file.
	maxSecretSize = 64 << 10
)

// secretFile is one configured file holding a secret.
type secretFile struct {
	key, path string
	tlsKey    bool // a TLS private key: warn only
}

func (c *Config) secretFiles() []secretFile {
	pg := c.PostgreSQL
	files := []secretFile{
		{key: "etcd.password_file", path: c.Etcd.PasswordFile},
		{key: "api.token_file", path: c.API.TokenFile},
		{key: "postgresql.superuser.password_file", path: pg.Superuser.PasswordFile},
		{key: "postgresql.replication.password_file", path: pg.Replication.PasswordFile},
		{key: "etcd.tls.key_file", path: c.Etcd.TLS.KeyFile, tlsKey: true},
		{key: "api.tls.key_file", path: c.API.TLS.KeyFile, tlsKey: true},
		{key: "discovery.dns.key_file", path: c.dnsKeyFile()},
	}
	if d := c.Discovery.Consul; d != nil {
		files = append(files, secretFile{key: "discovery.consul.token_file", path: d.TokenFile})
	}
	for _, name := range c.Fencing.Names() {
		files = append(files, secretFile{key: "fencing.members." + name + ".password_file", path: c.Fencing.Members[name].PasswordFile})
	}
	return files
}

// dnsKeyFile is discovery.dns.key_file, "" without a DNS section.
func (c *Config) dnsKeyFile() string {
	if c.Discovery.DNS == nil {
		return ""
	}
	return c.Discovery.DNS.KeyFile
}

// CheckSecrets checks the permissions of every configured password, token
// and TLS private key file (see the rules above). It returns one error
// listing every refused file, each naming the key, the file, its mode and
// the chmod that fixes it, and logs a warning for each file accepted with
// a looser mode than 0600. The agent calls it once at start; files that
// cannot be read at all are left to CheckPaths.
func (c *Config) CheckSecrets(log *slog.Logger) error {
	var errs []error
	for _, f := range c.secretFiles() {
		if f.path == "" {
			continue
		}
		fi, err := os.Stat(f.path)
		if err != nil || fi.IsDir() {
			continue // CheckPaths reports it
		}
		mode := fi.Mode().Perm()
		switch {
		case f.tlsKey && mode&(otherAccess|groupAccess) != 0:
			log.Warn("TLS private key file is readable or writable by other users than its owner; chmod 600 it",
				"key", f.key, "file", f.path, "mode", modeText(mode), "fix", "chmod 600 "+f.path)
		case f.tlsKey:
		case mode&otherAccess != 0:
			errs = append(errs, modeError(f.key, f.path, mode))
		case mode&groupAccess != 0:
			log.Warn("secret file is readable or writable by its group; chmod 600 it unless the group is meant to share it",
				"key", f.key, "file", f.path, "mode", modeText(mode), "fix", "chmod 600 "+f.path)
		}
	}
	return errors.Join(errs...)
}

func modeError(key, path string, mode fs.FileMode) error {
	return fmt.Errorf("%s: %s has mode %s: other users can read or change the secret in it; refusing to use it: chmod 600 %s (and chown it to the user hamgr runs as)",
		key, path, modeText(mode), path)
}

// modeText writes a permission as "0644 (-rw-r--r--)".
func modeText(mode fs.FileMode) string {
	return fmt.Sprintf("%04o (%s)", uint32(mode.Perm()), mode.Perm())
}

// readSecretFile reads the secret file at path, configured by key, and
// refuses it, before reading, when other users may read or write it. The
// mode is taken from the opened file, so it is the mode of what is read.
func readSecretFile(key, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s: %s is a directory, not a file", key, path)
	}
	if mode := fi.Mode().Perm(); mode&otherAccess != 0 {
		return nil, modeError(key, path, mode)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read %s: %w", key, path, err)
	}
	if len(b) > maxSecretSize {
		return nil, fmt.Errorf("%s: %s is larger than 64kB: name the file that holds only the secret", key, path)
	}
	return b, nil
}

// ReadPassword reads the password in the file at path, configured by key
// (such as "etcd.password_file", named in errors): its contents without
// the trailing newline; "" when path is "". A file other users may read or
// write is refused, and so is an empty one. Errors name the key and the
// file, never the password.
func ReadPassword(key, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := readSecretFile(key, path)
	if err != nil {
		return "", err
	}
	pw := strings.TrimRight(string(b), "\r\n")
	if pw == "" {
		return "", fmt.Errorf("%s: password file %s is empty: write the password into it", key, path)
	}
	return pw, nil
}

// Token reads the bearer token of the API's operator endpoints from
// TokenFile, without surrounding whitespace; "" (endpoints disabled) when
// TokenFile is not set. Like ReadPassword it refuses a file other users may
// read or write, and an empty one.
func (a API) Token() (string, error) {
	if a.TokenFile == "" {
		return "", nil
	}
	b, err := readSecretFile("api.token_file", a.TokenFile)
	if err != nil {
		return "", err
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("api.token_file %s is empty: write the bearer token into it, or remove api.token_file to disable the operator endpoints", a.TokenFile)
	}
	return token, nil
}

// SuperuserPassword reads postgresql.superuser.password_file (see
// ReadPassword); "" when it is not set.
func (p PostgreSQL) SuperuserPassword() (string, error) {
	return ReadPassword("postgresql.superuser.password_file", p.Superuser.PasswordFile)
}

// ReplicationPassword reads postgresql.replication.password_file (see
// ReadPassword).
func (p PostgreSQL) ReplicationPassword() (string, error) {
	return ReadPassword("postgresql.replication.password_file", p.Replication.PasswordFile)
}
