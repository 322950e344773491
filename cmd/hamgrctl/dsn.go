package main

import (
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/cluster"
)

// dsnRole is which servers a connection string from hamgrctl dsn targets.
type dsnRole string

// The roles of hamgrctl dsn --role.
const (
	dsnPrimary dsnRole = "primary"
	dsnReplica dsnRole = "replica"
)

// dsnFormat is the syntax of a connection string.
type dsnFormat string

// The formats of hamgrctl dsn --format.
const (
	formatLibpq dsnFormat = "libpq"
	formatURL   dsnFormat = "url"
	formatJDBC  dsnFormat = "jdbc"
)

// dsnOptions are hamgrctl dsn's flags.
type dsnOptions struct {
	role           dsnRole
	format         dsnFormat
	user, database string
}

func (a *app) dsnCmd() *cobra.Command {
	var o dsnOptions
	var role, format string
	c := &cobra.Command{
		Use:   "dsn [--role primary|replica] [--format libpq|url|jdbc] [--user U] [--dbname D]",
		Short: "Print a connection string for the primary or the replicas",
		Long: `Print a connection string that follows the primary (or the replicas)
through failovers, built from the member records in etcd.

--role primary (the default) lists every member's address, the current
leader first, with target_session_attrs=read-write (JDBC:
targetServerType=primary): the client connects to whichever member is
writable now, and after a failover to the new one, without asking hamgr
again. --role replica lists the members running as streaming replicas,
with target_session_attrs=standby (JDBC: targetServerType=secondary and
loadBalanceHosts=true). libpq tries the hosts in order; add
load_balance_hosts=random yourself if every client has libpq 16 or later
(older libpq refuses the keyword).

No password is ever printed: give it to the client the usual way
(~/.pgpass, PGPASSFILE, PGPASSWORD). Members whose agents are down (their
records expired) are not listed; print the string again after adding
members. Safe at any time: it only reads.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.role, o.format = dsnRole(role), dsnFormat(format)
			if err := o.validate(); err != nil {
				return err
			}
			s, err := a.open()
			if err != nil {
				return err
			}
			ctx, cancel := a.reqCtx(cmd.Context())
			defer cancel()
			snap, err := s.Load(ctx)
			if err != nil {
				return a.storeErr(err)
			}
			dsn, err := buildDSN(snap, o)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, dsn)
			return err
		},
	}
	c.Flags().StringVar(&role, "role", string(dsnPrimary), "which servers: primary or replica")
	c.Flags().StringVar(&format, "format", string(formatLibpq), "syntax: libpq (key=value), url (postgresql://) or jdbc")
	c.Flags().StringVar(&o.user, "user", "", "user name to put in the string (default: none, the client's default)")
	c.Flags().StringVar(&o.database, "dbname", "postgres", "database name")
	return c
}

// validate checks the flags' values.
func (o dsnOptions) validate() error {
	switch o.role {
	case dsnPrimary, dsnReplica:
	default:
		return usagef("--role %q: must be primary or replica", o.role)
	}
	switch o.format {
	case formatLibpq, formatURL, formatJDBC:
	default:
		return usagef("--format %q: must be libpq, url or jdbc", o.format)
	}
	if o.database == "" {
		return usagef("--dbname: must not be empty")
	}
	return nil
}

// buildDSN renders the connection string of o for the members of snap.
func buildDSN(snap cluster.Snapshot, o dsnOptions) (string, error) {
	hosts := dsnHosts(snap, o.role)
	if len(hosts) == 0 {
		if o.role == dsnReplica {
			return "", fmt.Errorf("no member of the cluster runs as a streaming replica now (see hamgrctl list)")
		}
		return "", fmt.Errorf("no member of the cluster has published its address (are the agents running? see hamgrctl list)")
	}
	attrs := "read-write"
	if o.role == dsnReplica {
		attrs = "standby"
	}
	switch o.format {
	case formatURL:
		return urlDSN(hosts, o, attrs), nil
	case formatJDBC:
		return jdbcDSN(hosts, o), nil
	}
	return libpqDSN(hosts, o, attrs), nil
}

// dsnHosts returns the addresses the role's string lists: for primary,
// every member with an address, the leader first; for replica, the
// running, streaming replicas. Within each group, by member name.
func dsnHosts(snap cluster.Snapshot, role dsnRole) []string {
	leader := ""
	if snap.Leader != nil {
		leader = snap.Leader.Name
	}
	members := append([]cluster.Member(nil), snap.Members...)
	sort.SliceStable(members, func(i, j int) bool {
		li, lj := members[i].Name == leader, members[j].Name == leader
		if li != lj {
			return li
		}
		return members[i].Name < members[j].Name
	})
	var hosts []string
	for _, m := range members {
		if m.ConnHost == "" || m.ConnPort == 0 {
			continue
		}
		if role == dsnReplica && (m.Name == leader || m.Role != cluster.RoleReplica || !m.Streaming) {
			continue
		}
		hosts = append(hosts, net.JoinHostPort(m.ConnHost, strconv.Itoa(m.ConnPort)))
	}
	return hosts
}

// libpqDSN renders a key=value string: host and port lists of equal
// length, as libpq pairs them.
func libpqDSN(hosts []string, o dsnOptions, attrs string) string {
	var hs, ps []string
	for _, hp := range hosts {
		h, p, _ := net.SplitHostPort(hp)
		hs, ps = append(hs, h), append(ps, p)
	}
	parts := []string{"host=" + strings.Join(hs, ","), "port=" + strings.Join(ps, ",")}
	if o.user != "" {
		parts = append(parts, "user="+libpqQuote(o.user))
	}
	parts = append(parts, "dbname="+libpqQuote(o.database), "target_session_attrs="+attrs)
	return strings.Join(parts, " ")
}

// libpqQuote quotes a value for a libpq key=value string when it needs it.
func libpqQuote(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// urlDSN renders a postgresql:// URI with a multi-host authority.
func urlDSN(hosts []string, o dsnOptions, attrs string) string {
	var b strings.Builder
	b.WriteString("postgresql://")
	if o.user != "" {
		b.WriteString(url.PathEscape(o.user) + "@")
	}
	b.WriteString(strings.Join(hosts, ","))
	b.WriteString("/" + url.PathEscape(o.database))
	b.WriteString("?target_session_attrs=" + attrs)
	return b.String()
}

// jdbcDSN renders a pgjdbc URL: targetServerType primary or secondary.
func jdbcDSN(hosts []string, o dsnOptions) string {
	q := url.Values{}
	if o.role == dsnReplica {
		q.Set("targetServerType", "secondary")
		q.Set("loadBalanceHosts", "true")
	} else {
		q.Set("targetServerType", "primary")
	}
	if o.user != "" {
		q.Set("user", o.user)
	}
	return "jdbc:postgresql://" + strings.Join(hosts, ",") + "/" + url.PathEscape(o.database) + "?" + q.Encode()
}
