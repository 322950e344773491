package cluster

import (
	"encoding/json"
	"fmt"
)

// Order is how one replication position stands to another.
type Order int

// Orders. The zero value is not an order.
const (
	// Behind: the other position contains everything this one does, and
	// more.
	Behind Order = 1 + iota
	// Equal: both hold the same history.
	Equal
	// Ahead: this position contains everything the other does, and more.
	Ahead
	// Diverged: each holds history the other lacks (a fork, or positions
	// of different engines); neither can follow the other as it is.
	Diverged
)

var orderNames = map[Order]string{Behind: "behind", Equal: "equal", Ahead: "ahead", Diverged: "diverged"}

// String names the order.
func (o Order) String() string {
	if s, ok := orderNames[o]; ok {
		return s
	}
	return fmt.Sprintf("order(%d)", int(o))
}

// Position is how far a member's database has come in its replication
// history, in its engine's own terms: opaque above the engine layer, which
// only compares positions (Compare, Cmp), measures lag between them
// (LagTo) and prints them. Engines build positions with their
// constructor in this package (engine_*.go); above the engine layer only
// displays of an engine's own columns read their parts, through the
// engine's accessor, never a decision. The zero value is "no position
// known"; it is behind every other position. Positions are comparable
// with ==, and marshal to JSON as an object tagged with the engine's name.
type Position struct {
	engine Engine
	// One field per engine; only the one of engine is set (gtid serves
	// both GTID engines, MariaDB and MySQL).
	pg   pgPosition
	gtid gtidPosition
}

// Engine is the engine whose position this is (0 for the zero Position).
func (p Position) Engine() Engine { return p.engine }

// IsZero reports whether no position is known.
func (p Position) IsZero() bool { return p.engine == 0 || p.kind().isZero(p) }

// Compare says how p stands to q: behind, equal, ahead or diverged. The
// zero position is behind every known one and equal to itself; positions
// of different engines are diverged.
func (p Position) Compare(q Position) Order {
	switch pz, qz := p.IsZero(), q.IsZero(); {
	case pz && qz:
		return Equal
	case pz:
		return Behind
	case qz:
		return Ahead
	case p.engine != q.engine:
		return Diverged
	}
	return p.kind().compare(p, q)
}

// Cmp is a total order for ranking positions, like cmp.Compare: -1 when p
// ranks below q, 0 when level, +1 when above. It agrees with Compare on
// every pair that Compare does not call Diverged; a diverged pair is
// ordered by the engine's rule for which history is the newer one (so a
// sort by Cmp is well defined and the same in every process). Positions
// of different engines rank by engine.
func (p Position) Cmp(q Position) int {
	switch pz, qz := p.IsZero(), q.IsZero(); {
	case pz && qz:
		return 0
	case pz:
		return -1
	case qz:
		return 1
	case p.engine != q.engine:
		if p.engine < q.engine {
			return -1
		}
		return 1
	}
	return p.kind().cmp(p, q)
}

// LagTo is how far p is behind ref in the engine's lag unit
// (Engine.LagUnit); 0 when p is level
// with or ahead of ref. It reports false when the lag cannot be measured:
// ref is zero, or p and ref belong to different engines. A zero p is as
// far behind as ref's whole history.
func (p Position) LagTo(ref Position) (int64, bool) {
	if ref.IsZero() || !p.IsZero() && p.engine != ref.engine {
		return 0, false
	}
	return ref.kind().lag(p, ref), true
}

// Beyond is the part of p's history that q lacks, in p's engine's
// notation: the errant transactions of a member that diverged from q
// (empty when q holds all of p). It reports false when p's engine cannot
// name them (its positions are not sets of transactions), or p and q
// belong to different engines.
func (p Position) Beyond(q Position) (Position, bool) {
	if p.IsZero() {
		return Position{}, true
	}
	k, ok := p.kind().(setKind)
	if !ok || !q.IsZero() && q.engine != p.engine {
		return Position{}, false
	}
	return k.beyond(p, q), true
}

// Max returns whichever of p and q ranks higher by Cmp (p when level).
func (p Position) Max(q Position) Position {
	if q.Cmp(p) > 0 {
		return q
	}
	return p
}

// String renders the position in its engine's notation, for logs and
// reasons; "none" for the zero position.
func (p Position) String() string {
	if p.IsZero() {
		return "none"
	}
	return p.kind().format(p)
}

// MarshalJSON encodes the position as an object tagged with its engine's
// name; the zero position is {}.
func (p Position) MarshalJSON() ([]byte, error) {
	if p.IsZero() {
		return []byte("{}"), nil
	}
	b, err := p.kind().marshal(p)
	if err != nil {
		return nil, fmt.Errorf("encode %s position: %w", p.engine, err)
	}
	return b, nil
}

// UnmarshalJSON decodes a position written by MarshalJSON, or by an
// earlier hamgr that wrote positions without an engine tag (those are
// the default engine's, DefaultEngine). An unknown engine is an error.
func (p *Position) UnmarshalJSON(b []byte) error {
	var tag struct {
		Engine string `json:"engine"`
	}
	if err := json.Unmarshal(b, &tag); err != nil {
		return fmt.Errorf("decode position: %w", err)
	}
	e := DefaultEngine
	if tag.Engine != "" {
		var ok bool
		if e, ok = engineNamed(tag.Engine); !ok {
			return fmt.Errorf("decode position: unknown engine %q", tag.Engine)
		}
	}
	q, err := e.kind().unmarshal(b)
	if err != nil {
		return fmt.Errorf("decode %s position: %w", e, err)
	}
	*p = q
	return nil
}

// positionKind is one engine's position semantics. Every method is pure;
// compare, cmp and lag are called only with positions of the kind's own
// engine (lag's p may be zero).
type positionKind interface {
	isZero(p Position) bool
	compare(p, q Position) Order
	cmp(p, q Position) int
	lag(p, ref Position) int64
	format(p Position) string
	marshal(p Position) ([]byte, error)
	// unmarshal decodes the engine's JSON form (tag included or not); an
	// object with none of the engine's fields is the zero Position.
	unmarshal(b []byte) (Position, error)
}

// setKind is a positionKind whose positions are sets of transactions,
// which can name what one position holds beyond another.
type setKind interface {
	positionKind
	// beyond is what p holds that q (of the same engine, or zero) lacks.
	beyond(p, q Position) Position
}

func (p Position) kind() positionKind { return p.engine.kind() }
