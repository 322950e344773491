package cluster

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// PostgreSQL positions: the engine-specific half of Position, and the
// decoding of records that earlier versions of hamgr wrote with
// PostgreSQL's fields at the top level (timeline, lsn, receive_lsn,
// replay_lsn, final_lsn).

// LSN is a PostgreSQL write-ahead-log position (a byte offset).
type LSN uint64

// String formats the LSN the way PostgreSQL does ("16/B374D848").
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xffffffff) }

// MarshalText encodes the LSN in PostgreSQL's notation.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText parses PostgreSQL's "hi/lo" notation.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// ParseLSN parses an LSN written as "hi/lo" in hexadecimal; the empty string is 0.
func ParseLSN(s string) (LSN, error) {
	if s == "" {
		return 0, nil
	}
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: want HI/LO in hexadecimal, like 0/3000060", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: high part: %w", s, err)
	}
	lw, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("parse LSN %q: low part: %w", s, err)
	}
	return LSN(h<<32 | lw), nil
}

// pgPosition is a PostgreSQL position: a timeline and an LSN on it, and,
// when known, where the timeline forked off its parent.
type pgPosition struct {
	timeline uint32 // 0: unknown
	lsn      LSN
	// forkParent and forkLSN: the timeline this one branched off and the
	// switchpoint, the first LSN of this timeline (0: unknown).
	forkParent uint32
	forkLSN    LSN
}

// PGPosition is the PostgreSQL position lsn on timeline (0: the timeline
// is unknown; such a position compares by LSN alone). LSN 0 on timeline 0
// is the zero Position.
func PGPosition(timeline uint32, lsn LSN) Position {
	if timeline == 0 && lsn == 0 {
		return Position{}
	}
	return Position{engine: EnginePostgreSQL, pg: pgPosition{timeline: timeline, lsn: lsn}}
}

// WithFork returns p (a PostgreSQL position) with the point where its
// timeline branched off parent: switchpoint, from the timeline's history
// file. With it Compare can tell a position on parent past the
// switchpoint as diverged rather than behind.
func (p Position) WithFork(parent uint32, switchpoint LSN) Position {
	if p.engine == EnginePostgreSQL {
		p.pg.forkParent, p.pg.forkLSN = parent, switchpoint
	}
	return p
}

// PostgreSQL returns the timeline and LSN of a PostgreSQL position; false
// for any other (the zero Position included). For the engine layer, and
// for displays that show PostgreSQL's own columns; decisions use Compare,
// Cmp and LagTo.
func (p Position) PostgreSQL() (timeline uint32, lsn LSN, ok bool) {
	if p.engine != EnginePostgreSQL {
		return 0, 0, false
	}
	return p.pg.timeline, p.pg.lsn, true
}

// pgKind: same timeline (or one unknown) → compare LSNs; different
// timelines → the higher is ahead, unless its fork point is known and the
// lower position is on its parent past it (diverged). Without a known
// fork point the rule is timeline first, then LSN; the engine reports a
// replica that diverged from its upstream on its own (db.Status.Diverged).
type pgKind struct{}

func (pgKind) isZero(p Position) bool { return p.pg.timeline == 0 && p.pg.lsn == 0 }

func cmpLSN(a, b LSN) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (pgKind) cmp(p, q Position) int {
	a, b := p.pg, q.pg
	if a.timeline != b.timeline && a.timeline != 0 && b.timeline != 0 {
		if a.timeline < b.timeline {
			return -1
		}
		return 1
	}
	return cmpLSN(a.lsn, b.lsn)
}

func (k pgKind) compare(p, q Position) Order {
	a, b := p.pg, q.pg
	c := k.cmp(p, q)
	if a.timeline != b.timeline && a.timeline != 0 && b.timeline != 0 {
		hi, lo := a, b
		if c < 0 {
			hi, lo = b, a
		}
		if hi.forkLSN != 0 && hi.forkParent == lo.timeline && lo.lsn > hi.forkLSN {
			return Diverged
		}
	}
	switch c {
	case -1:
		return Behind
	case 1:
		return Ahead
	}
	return Equal
}

func (pgKind) lag(p, ref Position) int64 {
	if p.pg.lsn >= ref.pg.lsn {
		return 0
	}
	return int64(ref.pg.lsn - p.pg.lsn)
}

func (pgKind) format(p Position) string { return p.pg.lsn.String() }

type pgForkJSON struct {
	Timeline uint32 `json:"timeline"`
	LSN      LSN    `json:"lsn"`
}

type pgPositionJSON struct {
	Engine   string      `json:"engine,omitempty"`
	Timeline uint32      `json:"timeline"`
	LSN      *LSN        `json:"lsn,omitempty"`
	Fork     *pgForkJSON `json:"fork,omitempty"`
}

func (pgKind) marshal(p Position) ([]byte, error) {
	lsn := p.pg.lsn
	w := pgPositionJSON{Engine: EnginePostgreSQL.String(), Timeline: p.pg.timeline, LSN: &lsn}
	if p.pg.forkLSN != 0 {
		w.Fork = &pgForkJSON{Timeline: p.pg.forkParent, LSN: p.pg.forkLSN}
	}
	return json.Marshal(w)
}

func (pgKind) unmarshal(b []byte) (Position, error) {
	var w pgPositionJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return Position{}, err
	}
	var lsn LSN
	if w.LSN != nil {
		lsn = *w.LSN
	}
	p := PGPosition(w.Timeline, lsn)
	if w.Fork != nil {
		p = p.WithFork(w.Fork.Timeline, w.Fork.LSN)
	}
	return p, nil
}

// UnmarshalJSON decodes a member record, including one written before
// positions carried an engine tag (receive_lsn and replay_lsn: PostgreSQL
// LSNs, their timeline unknown).
func (m *Member) UnmarshalJSON(b []byte) error {
	type plain Member
	var w struct {
		plain
		ReceiveLSN LSN `json:"receive_lsn"`
		ReplayLSN  LSN `json:"replay_lsn"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("decode member record: %w", err)
	}
	*m = Member(w.plain)
	if m.Received.IsZero() && w.ReceiveLSN != 0 {
		m.Received = PGPosition(0, w.ReceiveLSN)
	}
	if m.Replayed.IsZero() && w.ReplayLSN != 0 {
		m.Replayed = PGPosition(0, w.ReplayLSN)
	}
	return nil
}

// legacyHandoff adds the field in which earlier versions of hamgr read a
// PostgreSQL handoff's final position.
type legacyHandoff struct {
	handoffFields
	FinalLSN *LSN `json:"final_lsn,omitempty"`
}

type handoffFields Handoff

// MarshalJSON encodes the handoff; a PostgreSQL final position is also
// written as final_lsn, so that an agent of an earlier version (a rolling
// upgrade) waits for it before it promotes.
func (h Handoff) MarshalJSON() ([]byte, error) {
	w := legacyHandoff{handoffFields: handoffFields(h)}
	if _, lsn, ok := h.Final.PostgreSQL(); ok {
		w.FinalLSN = &lsn
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes a handoff, including one written by an earlier
// version (final_lsn only: a PostgreSQL LSN, its timeline unknown, which
// then compares by LSN alone).
func (h *Handoff) UnmarshalJSON(b []byte) error {
	var w legacyHandoff
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("decode switchover handoff: %w", err)
	}
	*h = Handoff(w.handoffFields)
	if h.Final.IsZero() && w.FinalLSN != nil {
		h.Final = PGPosition(0, *w.FinalLSN)
	}
	return nil
}
