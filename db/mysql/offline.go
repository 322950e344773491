package mysql

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	driver "github.com/go-sql-driver/mysql"

	"github.com/hamgr/hamgr/cluster"
)

// offlinePosition reads the GTID state of the stopped server from its
// last binary log file: the Gtid_list event at its head (the state when
// the file began, one GTID per domain and server) plus every GTID event
// in it. MariaDB only (mariadb-binlog); zero for MySQL, whose stopped
// position is not read yet.
func (m *MySQL) offlinePosition(ctx context.Context) (cluster.Position, error) {
	last, err := m.lastBinlog()
	if err != nil || last == "" {
		return cluster.Position{}, err
	}
	if !exists(filepath.Join(m.opts.ToolDir, "mariadb-binlog")) {
		return cluster.Position{}, nil
	}
	out, err := m.command(ctx, "mariadb-binlog", "--no-defaults", last).Output()
	if err != nil {
		return cluster.Position{}, fmt.Errorf("mariadb-binlog %s: %w", last, err)
	}
	return parseBinlogGTIDs(string(out))
}

// lastBinlog is the path of the last binary log file the index names,
// the one the server writes; "" when there is none.
func (m *MySQL) lastBinlog() (string, error) {
	idx, err := os.ReadFile(m.path("mysql-bin.index"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read binary log index: %w", err)
	}
	files := strings.Fields(string(idx))
	if len(files) == 0 {
		return "", nil
	}
	last := files[len(files)-1]
	if !filepath.IsAbs(last) {
		last = filepath.Join(m.opts.DataDir, last)
	}
	return last, nil
}

var (
	gtidListRE  = regexp.MustCompile(`Gtid list \[([^\]]*)\]`)
	gtidEventRE = regexp.MustCompile(`\bGTID (\d+-\d+-\d+)\b`)
)

// parseBinlogGTIDs reads mariadb-binlog's text: the Gtid list of the file
// head (the state when the file began) and each GTID event in it.
func parseBinlogGTIDs(text string) (cluster.Position, error) {
	var gtids []string
	if m := gtidListRE.FindStringSubmatch(text); m != nil {
		// A long list continues on comment lines: "[0-1-9,\n# 0-2-6]".
		gtids = append(gtids, strings.NewReplacer("#", "", "\n", "", " ", "").Replace(m[1]))
	}
	for _, m := range gtidEventRE.FindAllStringSubmatch(text, -1) {
		gtids = append(gtids, m[1])
	}
	return cluster.MariaDBPosition(strings.Join(gtids, ","))
}

// redact replaces secrets in err's text (a server error may quote the
// statement that held them).
func redact(err error, secrets ...string) error {
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, "<redacted>")
			changed = true
		}
	}
	if !changed {
		return err
	}
	return errors.New(msg)
}

// isErrno reports whether err is the server error number n.
func isErrno(err error, n uint16) bool {
	var me *driver.MySQLError
	return errors.As(err, &me) && me.Number == n
}
