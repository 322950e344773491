package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/operator"
)

func (a *app) configCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Show or change the cluster's dynamic configuration",
		Long: `Show or change the dynamic configuration that every agent of the cluster
reads from etcd:

  ttl                      leader lease; a dead primary is replaced about
                           this long after it stopped renewing (3s to 10m)
  loop_wait                pause between two rounds of each agent's loop
                           (1s to 1m)
  retry_timeout            how long store and database operations are retried
                           (1s to 5m)
  primary_start_timeout    how long a stopped primary may take to restart in
                           place before the leader key is released (0 to 1h)
  maximum_lag_on_failover  bytes a replica may lag and still be promoted
                           automatically, or be a switchover target (0 to 1TB)
  paused                   true suspends automatic failover (see pause)
  synchronous_mode         off, on (commits wait for synchronous standbys
                           while one is healthy) or strict (they always wait)
  synchronous_node_count   how many standbys confirm each commit (1 to 16)
  failover_backoff         anti-flapping: a leader lost less than this long
                           after the previous automatic failover is not
                           failed over automatically; an operator chooses
                           (0, the default, turns it off; up to 24h)
  failsafe_mode            true lets a primary whose agent cannot reach etcd
                           keep writing while every member confirms it over
                           the API (needs api.token_file on every member;
                           false, the default, stops it as without failsafe)
  fencing                  off (the default), require (a new primary is
                           promoted only once the old one's power-off is
                           confirmed) or best-effort (promoted without the
                           confirmation after ttl, when the old primary was
                           proven dead); each member's fencing section says
                           how to power the others off

The four durations are whole seconds. ttl must be greater than loop_wait +
retry_timeout, so that a leader that cannot renew its lease stops its
database before the lease expires. The agents' config files are checked by
the same rules.

The timing section of an agent's config file is used only when that agent
bootstraps a new cluster; afterwards the values in etcd rule, and these
commands are how to change them. Agents pick up a change in their next
loop round; a new ttl applies from each agent's next lease.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(a.configShowCmd(), a.configSetCmd(), a.configEditCmd())
	return c
}

func (a *app) configShowCmd() *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "show [--format yaml|json]",
		Short: "Print the dynamic configuration",
		Long: `Print the cluster's dynamic configuration from etcd, as YAML (default) or
JSON. Durations are Go durations (10s, 500ms); maximum_lag_on_failover is
in bytes. Keys at their default may be absent from etcd and are shown with
their effective value. Safe at any time: it only reads.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "yaml" && format != "json" {
				return usagef("--format %q: want yaml or json", format)
			}
			cfg, err := a.loadConfig(cmd.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(a.stdout, configValues(cfg))
			}
			_, err = io.WriteString(a.stdout, renderConfigYAML(cfg, ""))
			return err
		},
	}
	c.Flags().StringVarP(&format, "format", "o", "yaml", "output format: yaml or json")
	return c
}

func (a *app) configSetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "set KEY=VALUE [KEY=VALUE...]",
		Short: "Change one or more dynamic config keys, all or nothing",
		Long: `Change dynamic config keys. Durations take Go syntax (10s, 1m30s) or a
number of seconds, and must be whole seconds: ttl 3s to 10m, loop_wait 1s
to 1m, retry_timeout 1s to 5m, primary_start_timeout 0 to 1h,
failover_backoff 0 (off) to 24h; fencing off, require or best-effort.
maximum_lag_on_failover takes bytes, optionally with B, kB, MB, GB or TB
(powers of 1024: 16MB = 16777216), 0 to 1TB; paused and failsafe_mode take
true or false; synchronous_mode off, on or strict; synchronous_node_count 1
to 16.

All the changes are applied to the current config and the result is
validated as a whole before one write: either every key changes or none
does. So to shorten ttl below loop_wait + retry_timeout, change them in one
command:

    hamgrctl config set ttl=6s loop_wait=1s retry_timeout=2s

A refused change names the key and what is allowed, and writes nothing.`,
		Args: args(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			as, err := parseAssignments(argv)
			if err != nil {
				return usageError{err}
			}
			ctx := cmd.Context()
			cur, err := a.loadConfig(ctx)
			if err != nil {
				return err
			}
			next := cur
			for _, as := range as {
				if err := operator.Apply(&next, as.Key, as.Value); err != nil {
					return err
				}
			}
			if err := operator.Check(cur, next, joinAssignments(as)); err != nil {
				return fmt.Errorf("%w; nothing was written", err)
			}
			if next == cur {
				fmt.Fprintln(a.stdout, "No change: the config already has these values.")
				return nil
			}
			if err := a.writeConfig(ctx, cur, next); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Set %s. The config is now:\n", joinAssignments(as))
			_, err = io.WriteString(a.stdout, renderConfigYAML(next, ""))
			return err
		},
	}
}

func joinAssignments(as []assignment) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.Key + "=" + a.Value
	}
	return strings.Join(parts, " ")
}

func (a *app) configEditCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "edit",
		Short: "Edit the dynamic configuration in $EDITOR",
		Long: `Open the dynamic configuration as YAML in $EDITOR (default vi). When the
editor exits, the file is checked like 'config set' with every key in it:
a bad value is refused with the key's name and nothing is written. A key
you delete keeps its value. If nothing changed, nothing is written. If
someone else changed the config while you were editing, your edit is
refused rather than overwrite theirs: run it again.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			cur, err := a.loadConfig(ctx)
			if err != nil {
				return err
			}
			dir, err := os.MkdirTemp("", "hamgrctl-config-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			path := filepath.Join(dir, a.target.Cluster+".yaml")
			header := fmt.Sprintf("# Dynamic config of cluster %s. Save and quit to apply; lines starting with # are ignored.\n"+
				"# Durations in whole seconds (10s, 1m or 10): ttl 3s-10m, loop_wait 1s-1m, retry_timeout 1s-5m,\n"+
				"# primary_start_timeout 0-1h, failover_backoff 0 (off)-24h; ttl must be greater than loop_wait + retry_timeout.\n"+
				"# maximum_lag_on_failover: bytes or 16MB (1024-based), 0-1TB. synchronous_node_count: 1-16.\n"+
				"# fencing: off, require or best-effort.\n", a.target.Cluster)
			if err := os.WriteFile(path, []byte(renderConfigYAML(cur, header)), 0o600); err != nil {
				return err
			}
			if err := a.runEditor(ctx, path); err != nil {
				return err
			}
			edited, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			next, err := applyEdited(cur, edited)
			if err != nil {
				return err
			}
			if next == cur {
				fmt.Fprintln(a.stdout, "No change.")
				return nil
			}
			if err := a.writeConfig(ctx, cur, next); err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, "Config written:")
			_, err = io.WriteString(a.stdout, renderConfigYAML(next, ""))
			return err
		},
	}
}

// runEditor runs $EDITOR (default vi) on path, through the shell so that
// an EDITOR with arguments ("code --wait") works.
func (a *app) runEditor(ctx context.Context, path string) error {
	editor := strings.TrimSpace(a.getenv("EDITOR"))
	if editor == "" {
		editor = "vi"
	}
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", editor+` "$1"`, "hamgrctl-editor", path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("editor %q: %w; nothing was written", editor, err)
	}
	return nil
}

// applyEdited applies every key of an edited YAML document to cur with
// operator.Apply and validates the result. Keys left out keep their value.
func applyEdited(cur cluster.DynamicConfig, doc []byte) (cluster.DynamicConfig, error) {
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		return cur, fmt.Errorf("%w: the edited file is not valid YAML: %v; nothing was written", operator.ErrRefused, err)
	}
	next := cur
	shown := configTexts(cur)
	var as []assignment
	for _, k := range operator.ConfigKeys {
		// Only changed keys are applied: an untouched value stays exactly
		// as stored even if Apply would not accept its text form.
		if v, ok := m[k]; ok && scalarText(v) != shown[k] {
			as = append(as, assignment{Key: k, Value: scalarText(v)})
		}
	}
	var unknown []string
	for k := range m {
		if !contains(operator.ConfigKeys, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	for _, k := range unknown {
		as = append(as, assignment{Key: k, Value: scalarText(m[k])})
	}
	for _, as := range as {
		if err := operator.Apply(&next, as.Key, as.Value); err != nil {
			return cur, fmt.Errorf("%w; nothing was written", err)
		}
	}
	if err := operator.Check(cur, next, "the edited config"); err != nil {
		return cur, fmt.Errorf("%w; nothing was written", err)
	}
	return next, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func scalarText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	default:
		return fmt.Sprint(v)
	}
}

// loadConfig reads the dynamic config; a cluster without one is refused.
func (a *app) loadConfig(ctx context.Context) (cluster.DynamicConfig, error) {
	snap, err := a.load(ctx)
	if err != nil {
		return cluster.DynamicConfig{}, err
	}
	if snap.Config == nil {
		return cluster.DynamicConfig{}, fmt.Errorf("%w: cluster %s has no dynamic config in etcd (not bootstrapped yet, or wrong --cluster or --prefix?)",
			operator.ErrRefused, a.target.Cluster)
	}
	return *snap.Config, nil
}

// writeConfig writes next if the stored config is still was: a change made
// in between is not overwritten (the store compares and swaps).
func (a *app) writeConfig(ctx context.Context, was, next cluster.DynamicConfig) error {
	s, err := a.open()
	if err != nil {
		return err
	}
	rctx, done := a.reqCtx(ctx)
	defer done()
	_, err = s.UpdateConfig(rctx, func(cur cluster.DynamicConfig) (cluster.DynamicConfig, error) {
		if cur != was {
			return cur, fmt.Errorf("%w: the config was changed by someone else meanwhile; nothing was written, run the command again", operator.ErrRefused)
		}
		return next, nil
	})
	if errors.Is(err, operator.ErrRefused) {
		return err
	}
	if errors.Is(err, dcs.ErrNoConfig) {
		return fmt.Errorf("%w: %v", operator.ErrRefused, err)
	}
	if err != nil {
		return a.storeErr(fmt.Errorf("write config: %w", err))
	}
	return nil
}

// configValues returns every key of operator.ConfigKeys with its value
// as stored (the JSON form: durations as "10s", sizes in bytes). Keys the
// store leaves out when at their zero value get their effective default.
func configValues(c cluster.DynamicConfig) map[string]any {
	b, err := json.Marshal(c)
	m := map[string]any{}
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber()
		_ = dec.Decode(&m)
	}
	defaults := map[string]any{
		"paused":                 false,
		"synchronous_mode":       string(cluster.SyncOff),
		"synchronous_node_count": c.NodeCount(),
		"failover_backoff":       "0s",
		"failsafe_mode":          false,
		"fencing":                string(cluster.FencingOff),
	}
	out := make(map[string]any, len(operator.ConfigKeys))
	for _, k := range operator.ConfigKeys {
		if v, ok := m[k]; ok {
			out[k] = v
		} else {
			out[k] = defaults[k] // nil for a key this hamgrctl does not know
		}
	}
	return out
}

// configTexts returns each key's value as renderConfigYAML writes it.
func configTexts(c cluster.DynamicConfig) map[string]string {
	out := map[string]string{}
	for k, v := range configValues(c) {
		out[k] = scalarText(v)
	}
	return out
}

// renderConfigYAML renders c as YAML, keys in operator.ConfigKeys order,
// after header.
func renderConfigYAML(c cluster.DynamicConfig, header string) string {
	var b bytes.Buffer
	b.WriteString(header)
	texts := configTexts(c)
	for _, k := range operator.ConfigKeys {
		fmt.Fprintf(&b, "%s: %s", k, texts[k])
		if k == "maximum_lag_on_failover" {
			fmt.Fprintf(&b, "  # %s", humanBytes(c.MaximumLagOnFailover))
		}
		b.WriteString("\n")
	}
	return b.String()
}
