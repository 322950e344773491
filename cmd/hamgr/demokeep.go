//go:build !agentonly

package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/localcluster"
)

// keepMember is one member as --keep's instructions show it.
type keepMember struct {
	Name string
	// Config is the member's agent config file.
	Config          string
	PGPort, APIPort int
	// Primary: the member holds the leader key. Down: its agent does not
	// run (the demo killed its node).
	Primary, Down bool
}

// keepInfo is everything --keep's instructions name.
type keepInfo struct {
	// Dir holds the cluster's files.
	Dir string
	// Cluster is the cluster's name; Etcd the embedded etcd's client URLs.
	Cluster string
	Etcd    []string
	// TokenFile holds the API's bearer token; PasswordFile the postgres
	// superuser's password.
	TokenFile, PasswordFile string
	// Hamgrctl runs hamgrctl; when it is not built yet, BuildHamgrctl is
	// the command (run in hamgr's source tree) that builds it there.
	Hamgrctl, BuildHamgrctl string
	// Psql runs psql.
	Psql string
	// Members, in any order.
	Members []keepMember
	// Engine is the members' database; with EngineMariaDB, Client is the
	// mariadb client (Psql is then unused).
	Engine localcluster.Engine
	Client string
}

// serverName is the database's name in the member list.
func (k keepInfo) serverName() string {
	if k.Engine == localcluster.EngineMariaDB {
		return "MariaDB"
	}
	return "PostgreSQL"
}

// keepInfoOf gathers what --keep prints about the running cluster c,
// whose files are in dir; self is the hamgr binary, binDir PostgreSQL's.
func keepInfoOf(ctx context.Context, c *localcluster.Cluster, dir, self, binDir string, engine localcluster.Engine) keepInfo {
	k := keepInfo{
		Dir: dir, Etcd: c.Etcd.Endpoints(),
		TokenFile: c.APITokenFile(), PasswordFile: c.SuperPasswordFile(),
		Psql: findTool("psql", binDir), Engine: engine, Client: findTool("mariadb", "/usr/bin"),
	}
	k.Hamgrctl = findTool("hamgrctl", filepath.Dir(self))
	if k.Hamgrctl == "hamgrctl" {
		k.Hamgrctl = filepath.Join(k.Dir, "hamgrctl")
		k.BuildHamgrctl = "go build -o " + shellQuote(k.Hamgrctl) + " ./cmd/hamgrctl"
	}
	leader := ""
	if s, err := c.Snapshot(ctx); err == nil && s.Leader != nil {
		leader = s.Leader.Name
	}
	for _, n := range c.Nodes {
		k.Members = append(k.Members, keepMember{Name: n.Name, Config: n.Config, PGPort: n.PGPort, APIPort: n.APIPort,
			Primary: n.Name == leader, Down: !n.AgentRunning()})
	}
	if len(c.Nodes) > 0 {
		if cfg, err := config.Load(c.Nodes[0].Config); err == nil {
			k.Cluster = cfg.Cluster
		}
	}
	return k
}

// findTool returns the path of the program name in dir, else the one on
// PATH, else name itself.
func findTool(name, dir string) string {
	p := filepath.Join(dir, name)
	if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
		return p
	}
	return name
}

// psqlOrder returns members in the order a connection string should list
// them: the primary first, the running replicas by name, the members that
// are down last.
func psqlOrder(members []keepMember) []keepMember {
	out := append([]keepMember(nil), members...)
	rank := func(m keepMember) int {
		switch {
		case m.Primary && !m.Down:
			return 0
		case !m.Down:
			return 1
		default:
			return 2
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if ri, rj := rank(out[i]), rank(out[j]); ri != rj {
			return ri < rj
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// memberRole is the role column of --keep's member list.
func memberRole(m keepMember) string {
	switch {
	case m.Down:
		return "down"
	case m.Primary:
		return "primary"
	default:
		return "replica"
	}
}

// psqlConnString is a libpq connection string over every member in
// psqlOrder, finding the primary with target_session_attrs=read-write.
func psqlConnString(members []keepMember) string {
	var hosts, ports []string
	for _, m := range psqlOrder(members) {
		hosts = append(hosts, "127.0.0.1")
		ports = append(ports, fmt.Sprint(m.PGPort))
	}
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres target_session_attrs=read-write",
		strings.Join(hosts, ","), strings.Join(ports, ","))
}

// writeKeepInstructions prints how to use the running cluster: where its
// files are, and command lines that work as printed.
func writeKeepInstructions(out io.Writer, k keepInfo) error {
	ordered := psqlOrder(k.Members)
	fmt.Fprintf(out, "\nThe cluster keeps running until you press Ctrl-C (its files stay in %s).\n\nMembers:\n", k.Dir)
	var down []string
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, m := range ordered {
		fmt.Fprintf(tw, "  %s\t%s\tconfig %s\t%s 127.0.0.1:%d\tAPI http://127.0.0.1:%d\n",
			m.Name, memberRole(m), m.Config, k.serverName(), m.PGPort, m.APIPort)
		if m.Down {
			down = append(down, m.Name)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print the --keep instructions: %w", err)
	}
	fmt.Fprintf(out, "etcd endpoint: %s (cluster %q)\n", strings.Join(k.Etcd, ","), k.Cluster)
	fmt.Fprintf(out, "API token: in %s (the agents' POST endpoints want it as a bearer token)\n", k.TokenFile)
	if k.Engine == localcluster.EngineMariaDB {
		fmt.Fprintf(out, "root password: in %s (the agents' own account: write as a user without READ_ONLY ADMIN)\n", k.PasswordFile)
	} else {
		fmt.Fprintf(out, "postgres superuser password: in %s\n", k.PasswordFile)
	}
	if len(down) > 0 && k.Engine == localcluster.EngineMariaDB {
		fmt.Fprintf(out, "%s %s down (its node was killed).\n", strings.Join(down, ", "), isAre(len(down)))
	} else if len(down) > 0 {
		fmt.Fprintf(out, "%s %s down (its node was killed); psql below lists it last, after the running members.\n",
			strings.Join(down, ", "), isAre(len(down)))
	}
	if k.BuildHamgrctl != "" {
		fmt.Fprintf(out, "\nhamgrctl is not built yet; in hamgr's source tree run:\n  %s\n", k.BuildHamgrctl)
	}
	fmt.Fprintln(out, "\nTry, in another terminal:")
	for _, l := range keepCommands(k, ordered) {
		fmt.Fprintf(out, "  %s\n", l)
	}
	_, err := fmt.Fprintln(out)
	if err != nil {
		return fmt.Errorf("print the --keep instructions: %w", err)
	}
	return nil
}

// keepCommands are the command lines of --keep's instructions; ordered is
// psqlOrder(k.Members).
func keepCommands(k keepInfo, ordered []keepMember) []string {
	if len(ordered) == 0 {
		return nil
	}
	first := ordered[0] // the primary, or a running member, if there is one
	ctl := shellQuote(k.Hamgrctl) + " -c " + shellQuote(first.Config)
	switchover := ctl + " switchover"
	for _, m := range ordered {
		if !m.Primary && !m.Down {
			switchover += " --to " + m.Name
			break
		}
	}
	bearer := `-H "Authorization: Bearer $(cat ` + shellQuote(k.TokenFile) + `)"`
	api := fmt.Sprintf("http://127.0.0.1:%d", first.APIPort)
	client := `PGPASSWORD="$(cat ` + shellQuote(k.PasswordFile) + `)" ` + shellQuote(k.Psql) + " '" + psqlConnString(k.Members) + "'"
	if k.Engine == localcluster.EngineMariaDB {
		// root is the agents' account, over the member's unix socket.
		client = fmt.Sprintf(`MYSQL_PWD="$(cat %s)" %s -S %s -u root`, shellQuote(k.PasswordFile), shellQuote(k.Client),
			shellQuote(filepath.Join(filepath.Dir(first.Config), "my.sock")))
	}
	return []string{
		ctl + " list",
		ctl + " history",
		switchover,
		shellQuote(k.Hamgrctl) + " --cluster " + shellQuote(k.Cluster) + " --etcd " + shellQuote(strings.Join(k.Etcd, ",")) + " list",
		"curl -s -X POST " + bearer + " " + api + "/pause",
		"curl -s -X POST " + bearer + " " + api + "/resume",
		client,
	}
}

// isAre is "is" for one, "are" for more.
func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// shellQuote quotes s for a POSIX shell when it holds anything but
// characters that are safe unquoted.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./:=@%+,-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
