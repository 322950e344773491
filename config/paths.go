package config

import (
	"errors"
	"os"
	"path/filepath"
)

// PostgreSQLBinaries are the programs CheckPaths requires in postgresql.bin_dir.
var PostgreSQLBinaries = []string{"pg_ctl", "postgres", "initdb", "pg_basebackup"}

// CheckPaths checks what Validate cannot without the local file system: the
// PostgreSQL binaries exist in bin_dir and are executable, the password,
// token and TLS files are readable, and the parents of data_dir (and of
// etcd.embedded.dir) exist. Like Validate it returns one error listing every
// problem. File contents never appear in errors.
func (c *Config) CheckPaths() error {
	var p problems
	pg := c.PostgreSQL
	if c.UsesMySQL() {
		c.checkMySQLPaths(&p)
	}
	if pg.BinDir != "" && !c.UsesMySQL() {
		for _, name := range PostgreSQLBinaries {
			path := filepath.Join(pg.BinDir, name)
			fi, err := os.Stat(path)
			switch {
			case err != nil:
				p.add("postgresql.bin_dir", "%s: %v (is PostgreSQL installed, and is bin_dir its bin directory?)", path, pathErr(err))
			case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
				p.add("postgresql.bin_dir", "%s is not an executable file", path)
			}
		}
	}
	if pg.DataDir != "" {
		parent := filepath.Dir(filepath.Clean(pg.DataDir))
		checkDir(&p, "postgresql.data_dir", parent, "the parent of "+pg.DataDir)
	}
	if em := c.Etcd.Embedded; em != nil && em.Dir != "" {
		checkDir(&p, "etcd.embedded.dir", filepath.Dir(filepath.Clean(em.Dir)), "the parent of "+em.Dir)
	}
	files := []struct{ key, path string }{
		{"etcd.password_file", c.Etcd.PasswordFile},
		{"etcd.tls.ca_file", c.Etcd.TLS.CAFile},
		{"etcd.tls.cert_file", c.Etcd.TLS.CertFile},
		{"etcd.tls.key_file", c.Etcd.TLS.KeyFile},
		{"api.token_file", c.API.TokenFile},
		{"api.tls.ca_file", c.API.TLS.CAFile},
		{"api.tls.cert_file", c.API.TLS.CertFile},
		{"api.tls.key_file", c.API.TLS.KeyFile},
		{"postgresql.superuser.password_file", pg.Superuser.PasswordFile},
		{"postgresql.replication.password_file", pg.Replication.PasswordFile},
		{"discovery.dns.key_file", c.dnsKeyFile()},
	}
	if m := c.MySQL; m != nil {
		files = append(files, struct{ key, path string }{"mysql.superuser.password_file", m.Superuser.PasswordFile},
			struct{ key, path string }{"mysql.replication.password_file", m.Replication.PasswordFile})
	}
	fenceFiles, fenceProgs := c.Fencing.files()
	files = append(files, fenceFiles...)
	for _, f := range fenceProgs {
		if f.path == "" {
			continue
		}
		fi, err := os.Stat(f.path)
		switch {
		case err != nil:
			p.add(f.key, "%s: %v", f.path, pathErr(err))
		case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
			p.add(f.key, "%s is not an executable file", f.path)
		}
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			p.add(f.key, "%s: %v", f.path, pathErr(err))
			continue
		}
		fi, err := fh.Stat()
		fh.Close()
		if err == nil && fi.IsDir() {
			p.add(f.key, "%s is a directory, not a file", f.path)
		}
	}
	return errors.Join(p...)
}

func checkDir(p *problems, key, dir, what string) {
	fi, err := os.Stat(dir)
	switch {
	case err != nil:
		p.add(key, "%s (%s): %v", dir, what, pathErr(err))
	case !fi.IsDir():
		p.add(key, "%s (%s) is not a directory", dir, what)
	}
}

// pathErr drops the path from an *os.PathError, since the caller names it.
func pathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
