package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/operator"
)

// configEnv names the environment variable that is the default of --config.
const configEnv = "HAMGRCTL_CONFIG"

// connFlags are the global flags that say where the cluster is.
type connFlags struct {
	configPath   string
	cluster      string
	endpoints    []string
	prefix       string
	caFile       string
	certFile     string
	keyFile      string
	username     string
	passwordFile string
	timeout      time.Duration

	// flags is the flag set they live in, to tell set flags from defaults.
	flags *pflag.FlagSet
}

func (f *connFlags) register(root *cobra.Command) {
	p := root.PersistentFlags()
	p.StringVarP(&f.configPath, "config", "c", "", "an agent's YAML config file, for the cluster name and how to reach etcd (default $"+configEnv+")")
	p.StringVar(&f.cluster, "cluster", "", "cluster name (overrides the config file)")
	p.StringSliceVar(&f.endpoints, "etcd", nil, "etcd client URL(s), comma-separated (overrides the config file)")
	p.StringVar(&f.prefix, "prefix", config.DefaultEtcdPrefix, "etcd key prefix of hamgr (overrides the config file)")
	p.StringVar(&f.caFile, "etcd-cacert", "", "PEM file of the CA(s) that signed etcd's certificate")
	p.StringVar(&f.certFile, "etcd-cert", "", "PEM client certificate for etcd")
	p.StringVar(&f.keyFile, "etcd-key", "", "PEM private key of --etcd-cert")
	p.StringVar(&f.username, "etcd-user", "", "etcd user name (needs --etcd-password-file or password_file in the config)")
	p.StringVar(&f.passwordFile, "etcd-password-file", "", "file holding the etcd password")
	p.DurationVar(&f.timeout, "timeout", 5*time.Second, "deadline of each request to etcd")
	f.flags = p
}

func (f *connFlags) changed(name string) bool {
	return f.flags != nil && f.flags.Changed(name)
}

// target is where the cluster is and how to authenticate, once flags, the
// config file and the defaults are merged.
type target struct {
	Cluster      string
	Endpoints    []string
	Prefix       string
	TLS          config.TLS
	Username     string
	PasswordFile string
}

// resolve merges, from lowest to highest precedence: the defaults, the
// config file (--config, or $HAMGRCTL_CONFIG when --config is not given)
// and the flags that were set.
func (f *connFlags) resolve(getenv func(string) string) (target, error) {
	t := target{Prefix: config.DefaultEtcdPrefix}
	path := f.configPath
	if !f.changed("config") && path == "" {
		path = getenv(configEnv)
	}
	if path != "" {
		cfg, err := config.Load(path)
		if err != nil {
			return t, err
		}
		t.Cluster = cfg.Cluster
		t.Endpoints = cfg.Etcd.ClientEndpoints()
		if cfg.Etcd.Prefix != "" {
			t.Prefix = cfg.Etcd.Prefix
		}
		t.TLS = cfg.Etcd.TLS
		t.Username = cfg.Etcd.Username
		t.PasswordFile = cfg.Etcd.PasswordFile
	}
	set := func(name string, dst *string, v string) {
		if f.changed(name) {
			*dst = v
		}
	}
	set("cluster", &t.Cluster, f.cluster)
	set("prefix", &t.Prefix, f.prefix)
	set("etcd-cacert", &t.TLS.CAFile, f.caFile)
	set("etcd-cert", &t.TLS.CertFile, f.certFile)
	set("etcd-key", &t.TLS.KeyFile, f.keyFile)
	set("etcd-user", &t.Username, f.username)
	set("etcd-password-file", &t.PasswordFile, f.passwordFile)
	if f.changed("etcd") {
		t.Endpoints = nil
		for _, e := range f.endpoints {
			if e = strings.TrimSpace(e); e != "" {
				t.Endpoints = append(t.Endpoints, e)
			}
		}
	}
	var missing []string
	if t.Cluster == "" {
		missing = append(missing, "the cluster name (--cluster)")
	}
	if len(t.Endpoints) == 0 {
		missing = append(missing, "the etcd endpoints (--etcd)")
	}
	if len(missing) > 0 {
		return t, usagef("%s not known: pass --config FILE (an agent's config; or set %s) or --cluster NAME --etcd URL[,URL]",
			strings.Join(missing, " and "), configEnv)
	}
	if (t.TLS.CertFile == "") != (t.TLS.KeyFile == "") {
		return t, usagef("--etcd-cert and --etcd-key go together")
	}
	if t.Username != "" && t.PasswordFile == "" {
		return t, usagef("etcd user %q given without a password file (--etcd-password-file)", t.Username)
	}
	if f.timeout <= 0 {
		return t, usagef("--timeout %v: must be positive", f.timeout)
	}
	return t, nil
}

// app holds what the commands share: the environment, the connection
// flags and, once opened, the store.
type app struct {
	env
	conn   connFlags
	target target
	store  *etcd.Store
}

// open resolves the target and creates the store client (which does not
// contact etcd yet).
func (a *app) open() (*etcd.Store, error) {
	if a.store != nil {
		return a.store, nil
	}
	t, err := a.conn.resolve(a.getenv)
	if err != nil {
		return nil, err
	}
	tc, err := t.TLS.ClientConfig()
	if err != nil {
		return nil, err
	}
	var password string
	if t.Username != "" {
		key := "etcd.password_file"
		if a.conn.changed("etcd-password-file") {
			key = "--etcd-password-file"
		}
		if password, err = config.ReadPassword(key, t.PasswordFile); err != nil {
			return nil, fmt.Errorf("etcd password: %w", err)
		}
	}
	s, err := etcd.New(etcd.Options{
		Endpoints: t.Endpoints, Prefix: t.Prefix, Cluster: t.Cluster,
		DialTimeout: a.conn.timeout, RequestTimeout: a.conn.timeout,
		Username: t.Username, Password: password, TLS: tc,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	a.target, a.store = t, s
	return s, nil
}

func (a *app) close() {
	if a.store != nil {
		a.store.Close()
		a.store = nil
	}
}

// operator returns an Operator on the store, naming this user and host as
// the requester.
func (a *app) operator() (*operator.Operator, error) {
	s, err := a.open()
	if err != nil {
		return nil, err
	}
	return &operator.Operator{Store: s, Who: requester(), Now: a.now}, nil
}

func requester() string {
	who := "hamgrctl"
	if u, err := user.Current(); err == nil && u.Username != "" {
		who += " by " + u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		who += " on " + h
	}
	return who
}

// reqCtx bounds one request to etcd by --timeout.
func (a *app) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.conn.timeout)
}

// storeErr rewords a deadline error so the user knows where it came from;
// the store's error goes on to say, for each endpoint, why it could not be
// used (connection refused, no such host, TLS handshake, timeout).
func (a *app) storeErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("etcd at %s did not answer within %v (--timeout): %w", strings.Join(a.target.Endpoints, ","), a.conn.timeout, err)
	}
	return err
}
