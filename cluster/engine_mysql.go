package cluster

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"
)

// MySQL and MariaDB positions: GTID sets, the engine-specific half of
// Position for both flavours. A position holds its set as canonical text
// (so Position stays comparable with ==) and is parsed again when
// compared; each kind is pure arithmetic on the parsed set.
//
// MariaDB (EngineMariaDB). A GTID is domain-server_id-seq. With
// gtid_strict_mode every domain's history is one sequence of strictly
// increasing seq numbers, whichever server wrote them. The position is
// the server's GTID state: for each (domain, server_id) the highest seq
// it holds from that server (@@gtid_binlog_state, which keeps one GTID
// per domain and server, merged with @@gtid_slave_pos and a replica's
// Gtid_IO_Pos). One GTID per domain (@@gtid_current_pos) is not enough:
// after a failover the new primary's 0-2-12 says nothing about whether
// it holds the old primary's 0-1-10. A holds everything B does when, for
// every (domain, server_id) of B, A's seq is at least B's: a pointwise
// partial order. A transaction written on a replica (0-2-10 while the
// primary went on to 0-1-12) is an entry the primary's state lacks, so
// the two are diverged, not "ahead by seq". Limits: a member whose state
// lacks servers it replicated from (a replica without log_slave_updates,
// a RESET MASTER) may compare as diverged from members it is behind; and
// a history that forked more than once between the same servers can
// compare as contained — the engine reports a replica its upstream
// rejects (error 1236 or 1950) itself, as db.Status.Diverged.
//
// MySQL (EngineMySQL). @@gtid_executed is a set of uuid[:tag]:intervals;
// containment is interval-set containment per source, exact.
//
// Lag (LagUnit "transactions"): MySQL, the number of transactions of the
// reference missing from the position; MariaDB, per domain the
// reference's highest seq minus the position's, summed over domains
// (seq numbers of a domain advance by one per transaction).

// gtidPosition is the canonical text of a GTID set of the position's
// engine ("" for none).
type gtidPosition struct {
	set string
}

// MariaDBPosition parses a MariaDB GTID state or position: a comma list of
// domain-server_id-seq ("0-1-9,0-2-12"), in any order, whitespace
// ignored; of repeated (domain, server_id) pairs the highest seq counts.
// The empty list is the zero Position.
func MariaDBPosition(state string) (Position, error) {
	s, err := parseMariaDB(state)
	if err != nil {
		return Position{}, err
	}
	return s.position(), nil
}

// MySQLPosition parses a MySQL GTID set as @@gtid_executed prints it
// ("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,...", newlines ignored,
// tags of MySQL 8.3+ as uuid:tag:intervals). The empty set is the zero
// Position.
func MySQLPosition(set string) (Position, error) {
	s, err := parseMySQL(set)
	if err != nil {
		return Position{}, err
	}
	return s.position(), nil
}

// GTIDSet returns the canonical GTID set of a MariaDB or MySQL position
// (the engine's own notation, for the engine layer and displays); false
// for any other position.
func (p Position) GTIDSet() (string, bool) {
	if p.engine != EngineMariaDB && p.engine != EngineMySQL {
		return "", false
	}
	return p.gtid.set, true
}

// Union is the smallest position holding both p and q (MariaDB: the
// pointwise highest seq per domain and server; MySQL: the union of the
// sets), for merging a server's executed and received GTIDs. Zero
// positions are ignored; positions of different or other engines are
// an error.
func (p Position) Union(q Position) (Position, error) {
	switch {
	case q.IsZero():
		return p, nil
	case p.IsZero():
		return q, nil
	case p.engine != q.engine:
		return Position{}, fmt.Errorf("union of a %s and a %s position", p.engine, q.engine)
	}
	switch p.engine {
	case EngineMariaDB:
		a, b := mustMariaDB(p), mustMariaDB(q)
		for k, n := range b {
			if n > a[k] {
				a[k] = n
			}
		}
		return a.position(), nil
	case EngineMySQL:
		a, b := mustMySQL(p), mustMySQL(q)
		for src, iv := range b {
			a[src] = unionIntervals(a[src], iv)
		}
		return a.position(), nil
	}
	return Position{}, fmt.Errorf("union of %s positions: not a GTID engine", p.engine)
}

// ---- MariaDB ----

type mdbKey struct {
	domain, server uint32
}

// mdbState maps (domain, server_id) to the highest seq held from it.
type mdbState map[mdbKey]uint64

func parseMariaDB(text string) (mdbState, error) {
	s := mdbState{}
	for _, f := range strings.Split(text, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		parts := strings.Split(f, "-")
		if len(parts) != 3 {
			return nil, fmt.Errorf("parse MariaDB GTID %q: want domain-server_id-seq, like 0-1-9", f)
		}
		d, err1 := strconv.ParseUint(parts[0], 10, 32)
		sv, err2 := strconv.ParseUint(parts[1], 10, 32)
		n, err3 := strconv.ParseUint(parts[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("parse MariaDB GTID %q: want unsigned decimal domain-server_id-seq", f)
		}
		if n == 0 {
			continue // seq 0 is no transaction
		}
		k := mdbKey{uint32(d), uint32(sv)}
		if n > s[k] {
			s[k] = n
		}
	}
	return s, nil
}

func mustMariaDB(p Position) mdbState {
	s, err := parseMariaDB(p.gtid.set)
	if err != nil {
		panic(fmt.Sprintf("cluster: non-canonical MariaDB position %q: %v", p.gtid.set, err))
	}
	return s
}

func (s mdbState) keys() []mdbKey {
	ks := make([]mdbKey, 0, len(s))
	for k := range s {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].domain != ks[j].domain {
			return ks[i].domain < ks[j].domain
		}
		return ks[i].server < ks[j].server
	})
	return ks
}

func (s mdbState) String() string {
	var b strings.Builder
	for i, k := range s.keys() {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d-%d-%d", k.domain, k.server, s[k])
	}
	return b.String()
}

func (s mdbState) position() Position {
	if len(s) == 0 {
		return Position{}
	}
	return Position{engine: EngineMariaDB, gtid: gtidPosition{set: s.String()}}
}

// contains reports whether s holds every GTID of t.
func (s mdbState) contains(t mdbState) bool {
	for k, n := range t {
		if s[k] < n {
			return false
		}
	}
	return true
}

// domainTops is the highest seq of each domain.
func (s mdbState) domainTops() map[uint32]uint64 {
	top := map[uint32]uint64{}
	for k, n := range s {
		if n > top[k.domain] {
			top[k.domain] = n
		}
	}
	return top
}

type mariaDBKind struct{}

func (mariaDBKind) isZero(p Position) bool { return p.gtid.set == "" }

func (mariaDBKind) compare(p, q Position) Order {
	a, b := mustMariaDB(p), mustMariaDB(q)
	return orderOf(a.contains(b), b.contains(a))
}

// cmp ranks by the number of transactions (the sum of each domain's
// highest seq), then by the sum of every entry (strictly larger for a
// strict superset with the same domain tops), then by the canonical text.
func (mariaDBKind) cmp(p, q Position) int {
	a, b := mustMariaDB(p), mustMariaDB(q)
	var ta, tb, ea, eb sum128
	for _, n := range a.domainTops() {
		ta.add(n)
	}
	for _, n := range b.domainTops() {
		tb.add(n)
	}
	for _, n := range a {
		ea.add(n)
	}
	for _, n := range b {
		eb.add(n)
	}
	if c := ta.cmp(tb); c != 0 {
		return c
	}
	if c := ea.cmp(eb); c != 0 {
		return c
	}
	return strings.Compare(p.gtid.set, q.gtid.set)
}

func (mariaDBKind) lag(p, ref Position) int64 {
	var pt map[uint32]uint64
	if p.IsZero() {
		pt = map[uint32]uint64{}
	} else {
		pt = mustMariaDB(p).domainTops()
	}
	var l sum128
	for d, n := range mustMariaDB(ref).domainTops() {
		if n > pt[d] {
			l.add(n - pt[d])
		}
	}
	return l.int64()
}

func (mariaDBKind) format(p Position) string { return p.gtid.set }

// beyond is what p holds that q lacks: the entries of p's state whose seq
// is higher than q's for the same domain and server.
func (mariaDBKind) beyond(p, q Position) Position {
	a, b := mustMariaDB(p), mdbState{}
	if !q.IsZero() {
		b = mustMariaDB(q)
	}
	out := mdbState{}
	for k, n := range a {
		if n > b[k] {
			out[k] = n
		}
	}
	return out.position()
}

func (mariaDBKind) marshal(p Position) ([]byte, error) {
	return json.Marshal(gtidPositionJSON{Engine: EngineMariaDB.String(), GTID: p.gtid.set})
}

func (mariaDBKind) unmarshal(b []byte) (Position, error) {
	var w gtidPositionJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return Position{}, err
	}
	return MariaDBPosition(w.GTID)
}

type gtidPositionJSON struct {
	Engine string `json:"engine,omitempty"`
	GTID   string `json:"gtid"`
}

func orderOf(aHasB, bHasA bool) Order {
	switch {
	case aHasB && bHasA:
		return Equal
	case aHasB:
		return Ahead
	case bHasA:
		return Behind
	}
	return Diverged
}

// ---- MySQL ----

// interval is the closed range [lo, hi] of transaction numbers.
type interval struct{ lo, hi uint64 }

// mysqlSet maps a source (lower-case uuid, or uuid:tag) to its sorted,
// disjoint, non-adjacent intervals.
type mysqlSet map[string][]interval

func parseMySQL(text string) (mysqlSet, error) {
	s := mysqlSet{}
	for _, f := range strings.Split(text, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		parts := strings.Split(f, ":")
		uuid := strings.ToLower(strings.TrimSpace(parts[0]))
		if !validUUID(uuid) {
			return nil, fmt.Errorf("parse MySQL GTID set %q: %q is not a server uuid", f, parts[0])
		}
		if len(parts) < 2 {
			return nil, fmt.Errorf("parse MySQL GTID set %q: want uuid:interval[:interval...]", f)
		}
		src := uuid
		for _, part := range parts[1:] {
			part = strings.TrimSpace(part)
			if part != "" && (part[0] < '0' || part[0] > '9') {
				tag := strings.ToLower(part)
				if !validTag(tag) {
					return nil, fmt.Errorf("parse MySQL GTID set %q: bad tag %q", f, part)
				}
				src = uuid + ":" + tag
				continue
			}
			iv, err := parseInterval(part)
			if err != nil {
				return nil, fmt.Errorf("parse MySQL GTID set %q: %w", f, err)
			}
			s[src] = unionIntervals(s[src], []interval{iv})
		}
	}
	return s, nil
}

func parseInterval(t string) (interval, error) {
	lo, hi, isRange := strings.Cut(t, "-")
	a, err := strconv.ParseUint(lo, 10, 63)
	if err != nil || a == 0 {
		return interval{}, fmt.Errorf("bad interval %q: want N or N-M, N ≥ 1", t)
	}
	b := a
	if isRange {
		if b, err = strconv.ParseUint(hi, 10, 63); err != nil || b < a {
			return interval{}, fmt.Errorf("bad interval %q: want N-M with M ≥ N", t)
		}
	}
	return interval{a, b}, nil
}

func validUUID(u string) bool {
	if len(u) != 36 {
		return false
	}
	for i, c := range u {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// validTag: MySQL 8.3+ GTID tags, [a-z_][a-z0-9_]{0,31}.
func validTag(t string) bool {
	if len(t) == 0 || len(t) > 32 {
		return false
	}
	for i, c := range t {
		if !(c == '_' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// unionIntervals merges two normalized interval lists.
func unionIntervals(a, b []interval) []interval {
	all := append(append(make([]interval, 0, len(a)+len(b)), a...), b...)
	sort.Slice(all, func(i, j int) bool { return all[i].lo < all[j].lo })
	var out []interval
	for _, iv := range all {
		if n := len(out); n > 0 && iv.lo <= out[n-1].hi+1 {
			if iv.hi > out[n-1].hi {
				out[n-1].hi = iv.hi
			}
			continue
		}
		out = append(out, iv)
	}
	return out
}

// subtractIntervals is a minus b, both normalized.
func subtractIntervals(a, b []interval) []interval {
	var out []interval
	j := 0
	for _, iv := range a {
		lo := iv.lo
		for j < len(b) && b[j].hi < lo {
			j++
		}
		for k := j; k < len(b) && b[k].lo <= iv.hi && lo <= iv.hi; k++ {
			if b[k].lo > lo {
				out = append(out, interval{lo, b[k].lo - 1})
			}
			if b[k].hi >= iv.hi {
				lo = iv.hi + 1
				break
			}
			lo = b[k].hi + 1
		}
		if lo <= iv.hi {
			out = append(out, interval{lo, iv.hi})
		}
	}
	return out
}

func mustMySQL(p Position) mysqlSet {
	s, err := parseMySQL(p.gtid.set)
	if err != nil {
		panic(fmt.Sprintf("cluster: non-canonical MySQL position %q: %v", p.gtid.set, err))
	}
	return s
}

// minus is s without the transactions of t.
func (s mysqlSet) minus(t mysqlSet) mysqlSet {
	out := mysqlSet{}
	for src, iv := range s {
		if rest := subtractIntervals(iv, t[src]); len(rest) > 0 {
			out[src] = rest
		}
	}
	return out
}

func (s mysqlSet) count() sum128 {
	var c sum128
	for _, ivs := range s {
		for _, iv := range ivs {
			c.add(iv.hi - iv.lo + 1)
		}
	}
	return c
}

// String writes the canonical text: sources by uuid, each uuid's
// untagged intervals first, then its tags in order.
func (s mysqlSet) String() string {
	srcs := make([]string, 0, len(s))
	for src, iv := range s {
		if len(iv) > 0 {
			srcs = append(srcs, src)
		}
	}
	sort.Strings(srcs) // "uuid" sorts before "uuid:tag"
	var b strings.Builder
	last := ""
	for _, src := range srcs {
		uuid, tag, _ := strings.Cut(src, ":")
		if uuid != last {
			if last != "" {
				b.WriteByte(',')
			}
			b.WriteString(uuid)
			last = uuid
		}
		if tag != "" {
			b.WriteString(":" + tag)
		}
		for _, iv := range s[src] {
			if iv.lo == iv.hi {
				fmt.Fprintf(&b, ":%d", iv.lo)
			} else {
				fmt.Fprintf(&b, ":%d-%d", iv.lo, iv.hi)
			}
		}
	}
	return b.String()
}

func (s mysqlSet) position() Position {
	t := s.String()
	if t == "" {
		return Position{}
	}
	return Position{engine: EngineMySQL, gtid: gtidPosition{set: t}}
}

type mysqlKind struct{}

func (mysqlKind) isZero(p Position) bool { return p.gtid.set == "" }

func (mysqlKind) compare(p, q Position) Order {
	a, b := mustMySQL(p), mustMySQL(q)
	return orderOf(len(b.minus(a)) == 0, len(a.minus(b)) == 0)
}

// cmp ranks by the number of transactions (strictly larger for a strict
// superset), then by the canonical text.
func (mysqlKind) cmp(p, q Position) int {
	if c := mustMySQL(p).count().cmp(mustMySQL(q).count()); c != 0 {
		return c
	}
	return strings.Compare(p.gtid.set, q.gtid.set)
}

func (mysqlKind) lag(p, ref Position) int64 {
	have := mysqlSet{}
	if !p.IsZero() {
		have = mustMySQL(p)
	}
	c := mustMySQL(ref).minus(have).count()
	return c.int64()
}

func (mysqlKind) format(p Position) string { return p.gtid.set }

func (mysqlKind) beyond(p, q Position) Position {
	b := mysqlSet{}
	if !q.IsZero() {
		b = mustMySQL(q)
	}
	return mustMySQL(p).minus(b).position()
}

func (mysqlKind) marshal(p Position) ([]byte, error) {
	return json.Marshal(gtidPositionJSON{Engine: EngineMySQL.String(), GTID: p.gtid.set})
}

func (mysqlKind) unmarshal(b []byte) (Position, error) {
	var w gtidPositionJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return Position{}, err
	}
	return MySQLPosition(w.GTID)
}

// sum128 is an unsigned 128-bit sum, so that counts of huge GTID numbers
// never wrap.
type sum128 struct{ hi, lo uint64 }

func (s *sum128) add(n uint64) {
	var c uint64
	s.lo, c = bits.Add64(s.lo, n, 0)
	s.hi += c
}

func (s sum128) cmp(t sum128) int {
	switch {
	case s.hi != t.hi:
		if s.hi < t.hi {
			return -1
		}
		return 1
	case s.lo < t.lo:
		return -1
	case s.lo > t.lo:
		return 1
	}
	return 0
}

// int64 is the sum, capped at the largest int64.
func (s sum128) int64() int64 {
	if s.hi != 0 || s.lo > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(s.lo)
}
