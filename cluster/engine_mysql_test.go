package cluster

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

func mdb(t testing.TB, s string) Position {
	t.Helper()
	p, err := MariaDBPosition(s)
	if err != nil {
		t.Fatalf("MariaDBPosition(%q): %v", s, err)
	}
	return p
}

func my(t testing.TB, s string) Position {
	t.Helper()
	p, err := MySQLPosition(s)
	if err != nil {
		t.Fatalf("MySQLPosition(%q): %v", s, err)
	}
	return p
}

const (
	uA = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
	uB = "8c3a2e6e-1f2b-11ef-a1b2-0242ac120002"
)

func TestMariaDBPositionCompare(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b string
		want Order
		cmp  int
		lag  int64 // a.LagTo(b)
	}{
		{"same server, lower seq", "0-1-9", "0-1-12", Behind, -1, 3},
		{"same state", "0-1-9,0-2-12", "0-2-12,0-1-9", Equal, 0, 0},
		// A failover: the new primary (server 2) holds the old primary's
		// history and its own.
		{"new primary holds the old one's history", "0-1-9,0-2-12", "0-1-9", Ahead, 1, 0},
		// The old primary committed 0-1-10, which never reached server 2.
		{"old primary with a lost transaction", "0-1-10", "0-1-9,0-2-12", Diverged, -1, 2},
		// Pitfall: a write on a replica (0-2-10) while the primary went on.
		{"errant replica write", "0-1-9,0-2-10", "0-1-12", Diverged, -1, 2},
		{"same seq, other server", "0-1-10", "0-2-10", Diverged, -1, 0},
		{"domains independent, ahead in both", "0-1-5,1-1-7", "0-1-4,1-1-7", Ahead, 1, 0},
		{"domains independent, crossing", "0-1-5,1-1-6", "0-1-4,1-1-7", Diverged, 1, 1},
		{"extra domain", "0-1-5,1-3-1", "0-1-5", Ahead, 1, 0},
		{"strict superset with the same domain tops", "0-1-10,0-2-5", "0-1-10", Ahead, 1, 0},
		{"zero is behind", "", "0-1-1", Behind, -1, 1},
		{"seq 0 is no transaction", "0-1-0", "", Equal, 0, 0},
	} {
		a, b := mdb(t, c.a), mdb(t, c.b)
		if got := a.Compare(b); got != c.want {
			t.Errorf("%s: %s Compare %s = %s, want %s", c.name, a, b, got, c.want)
		}
		if got := a.Cmp(b); got != c.cmp {
			t.Errorf("%s: Cmp = %d, want %d", c.name, got, c.cmp)
		}
		if c.b != "" {
			if got, ok := a.LagTo(b); !ok || got != c.lag {
				t.Errorf("%s: LagTo = %d, %t; want %d", c.name, got, ok, c.lag)
			}
		}
	}
	if u := EngineMariaDB.LagUnit(); u != "transactions" {
		t.Errorf("MariaDB lag unit %q", u)
	}
}

func TestMariaDBPositionErrant(t *testing.T) {
	replica, primary := mdb(t, "0-1-9,0-2-10,1-5-3"), mdb(t, "0-1-12,1-5-3")
	e, ok := replica.Beyond(primary)
	if !ok || e.String() != "0-2-10" {
		t.Errorf("errant GTIDs = %s, %t; want 0-2-10", e, ok)
	}
	if e, ok := primary.Beyond(mdb(t, "0-1-12,0-2-10,1-5-3")); !ok || !e.IsZero() {
		t.Errorf("contained position has errant %s, %t", e, ok)
	}
	if _, ok := PGPosition(1, 1).Beyond(PGPosition(1, 2)); ok {
		t.Error("a PostgreSQL position named errant transactions")
	}
	if _, ok := replica.Beyond(my(t, uA+":1")); ok {
		t.Error("errant transactions across engines")
	}
}

func TestMariaDBPositionParse(t *testing.T) {
	p := mdb(t, " 1-3-7 , 0-2-12,0-1-9,0-1-4 ")
	if s, _ := p.GTIDSet(); s != "0-1-9,0-2-12,1-3-7" {
		t.Errorf("canonical = %q", s)
	}
	for _, bad := range []string{"0-1", "a-1-2", "0-1-2-3", "-1-1-1", "0-4294967296-1", "0-1-18446744073709551616"} {
		if _, err := MariaDBPosition(bad); err == nil {
			t.Errorf("MariaDBPosition(%q) accepted", bad)
		}
	}
	if !mdb(t, "").IsZero() || !mdb(t, " , ").IsZero() {
		t.Error("empty state is not zero")
	}
}

func TestMySQLPositionCompare(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b string
		want Order
		cmp  int
		lag  int64 // a.LagTo(b)
	}{
		{"prefix", uA + ":1-5", uA + ":1-9", Behind, -1, 4},
		{"same set, other spelling", uA + ":1-3:4-5," + uB + ":7", strings.ToUpper(uB) + ":7,\n" + uA + ":1-5", Equal, 0, 0},
		{"superset with a gap filled", uA + ":1-9", uA + ":1-3:5-9", Ahead, 1, 0},
		{"missing a middle transaction", uA + ":1-3:5-9", uA + ":1-9", Behind, -1, 1},
		{"errant transaction from another uuid", uA + ":1-9," + uB + ":1", uA + ":1-12", Diverged, -1, 3},
		{"more sources", uA + ":1-9," + uB + ":1-2", uA + ":1-9", Ahead, 1, 0},
		{"tagged transactions are their own source", uA + ":1-5:blue:1-2", uA + ":1-5", Ahead, 1, 0},
		{"tag against plain", uA + ":blue:1-5", uA + ":1-5", Diverged, 1, 5},
		{"zero", "", uA + ":1-3", Behind, -1, 3},
	} {
		a, b := my(t, c.a), my(t, c.b)
		if got := a.Compare(b); got != c.want {
			t.Errorf("%s: %s Compare %s = %s, want %s", c.name, a, b, got, c.want)
		}
		if got := a.Cmp(b); got != c.cmp {
			t.Errorf("%s: Cmp = %d, want %d", c.name, got, c.cmp)
		}
		if got, ok := a.LagTo(b); !ok || got != c.lag {
			t.Errorf("%s: LagTo = %d, %t; want %d", c.name, got, ok, c.lag)
		}
	}
	a := my(t, uA+":1-9,"+uB+":1-2:5")
	if e, ok := a.Beyond(my(t, uA+":1-12,"+uB+":2")); !ok || e.String() != uB+":1:5" {
		t.Errorf("errant = %s, %t", e, ok)
	}
	if u := EngineMySQL.LagUnit(); u != "transactions" {
		t.Errorf("MySQL lag unit %q", u)
	}
	if my(t, uA+":1").Compare(mdb(t, "0-1-1")) != Diverged {
		t.Error("MySQL and MariaDB positions are not diverged")
	}
}

func TestMySQLPositionParse(t *testing.T) {
	p := my(t, strings.ToUpper(uB)+":7:1-3:2-5:9,\n"+uA+":Blue:4:_x:1,"+uA+":1-2")
	if s, _ := p.GTIDSet(); s != uA+":1-2:_x:1:blue:4,"+uB+":1-5:7:9" {
		t.Errorf("canonical = %q", s)
	}
	for _, bad := range []string{uA, uA + ":0", uA + ":5-3", "nope:1", uA + ":1-x", uA + ":9tag:1", uA + ":" + strings.Repeat("t", 33) + ":1",
		uA + ":9223372036854775808"} {
		if _, err := MySQLPosition(bad); err == nil {
			t.Errorf("MySQLPosition(%q) accepted", bad)
		}
	}
}

func TestGTIDPositionJSON(t *testing.T) {
	for _, p := range []Position{mdb(t, "0-1-9,0-2-12"), my(t, uA+":1-5:blue:1")} {
		b, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := p.GTIDSet()
		if want := fmt.Sprintf(`{"engine":%q,"gtid":%q}`, p.Engine(), s); string(b) != want {
			t.Errorf("Marshal = %s, want %s", b, want)
		}
		var q Position
		if err := json.Unmarshal(b, &q); err != nil || q != p {
			t.Errorf("round trip %s = %v, %v", b, q, err)
		}
	}
	var q Position
	if err := json.Unmarshal([]byte(`{"engine":"mariadb","gtid":"x"}`), &q); err == nil {
		t.Error("a bad GTID decoded")
	}
	if err := json.Unmarshal([]byte(`{"engine":"mysql","gtid":""}`), &q); err != nil || !q.IsZero() {
		t.Errorf("empty set decoded as %v, %v", q, err)
	}
}

func TestPositionUnion(t *testing.T) {
	u, err := mdb(t, "0-1-9,0-2-3").Union(mdb(t, "0-2-12,1-1-1"))
	if err != nil || u.String() != "0-1-9,0-2-12,1-1-1" {
		t.Errorf("MariaDB union = %s, %v", u, err)
	}
	u, err = my(t, uA+":1-3").Union(my(t, uA+":4-6:9"))
	if err != nil || u.String() != uA+":1-6:9" {
		t.Errorf("MySQL union = %s, %v", u, err)
	}
	if u, err := (Position{}).Union(my(t, uA+":1")); err != nil || u != my(t, uA+":1") {
		t.Errorf("union with zero = %s, %v", u, err)
	}
	if _, err := my(t, uA+":1").Union(mdb(t, "0-1-1")); err == nil {
		t.Error("union across engines")
	}
	if _, err := PGPosition(1, 1).Union(PGPosition(1, 2)); err == nil {
		t.Error("union of PostgreSQL positions")
	}
}

// randomMariaDB draws a state from a small universe, so that random
// pairs are often comparable.
func randomMariaDB(r *rand.Rand) Position {
	var parts []string
	for d := 0; d < 2; d++ {
		for s := 1; s <= 3; s++ {
			if r.Intn(2) == 0 {
				parts = append(parts, fmt.Sprintf("%d-%d-%d", d, s, r.Intn(4)))
			}
		}
	}
	p, _ := MariaDBPosition(strings.Join(parts, ","))
	return p
}

func randomMySQL(r *rand.Rand) Position {
	var parts []string
	for _, u := range []string{uA, uB, uA + ":t"} {
		if r.Intn(3) == 0 {
			continue
		}
		s := u
		for i := 0; i < 1+r.Intn(3); i++ {
			lo := 1 + r.Intn(8)
			s += fmt.Sprintf(":%d-%d", lo, lo+r.Intn(3))
		}
		parts = append(parts, s)
	}
	p, _ := MySQLPosition(strings.Join(parts, ","))
	return p
}

var reverse = map[Order]Order{Behind: Ahead, Ahead: Behind, Equal: Equal, Diverged: Diverged}

// checkOrderLaws checks, for one pair, the laws every engine's positions
// obey: Compare antisymmetric, Equal only for ==, Cmp antisymmetric and
// agreeing with Compare, lag zero for a position that holds the
// reference, errant transactions empty exactly when contained, the union
// holding both, and the JSON and text round trips.
func checkOrderLaws(t *testing.T, a, b Position, reparse func(string) (Position, error)) {
	t.Helper()
	o := a.Compare(b)
	if back := b.Compare(a); back != reverse[o] {
		t.Fatalf("%s Compare %s = %s but reverse = %s", a, b, o, back)
	}
	if (o == Equal) != (a == b) {
		t.Fatalf("%s Compare %s = %s, == %t", a, b, o, a == b)
	}
	c := a.Cmp(b)
	if c != -b.Cmp(a) {
		t.Fatalf("Cmp not antisymmetric on %s, %s", a, b)
	}
	if want := map[Order]int{Behind: -1, Equal: 0, Ahead: 1}; o != Diverged && c != want[o] {
		t.Fatalf("%s Cmp %s = %d, Compare %s", a, b, c, o)
	}
	if o == Ahead || o == Equal {
		if lag, ok := a.LagTo(b); !b.IsZero() && (!ok || lag != 0) {
			t.Fatalf("%s holds %s but lags %d", a, b, lag)
		}
	}
	e, ok := a.Beyond(b)
	if !ok || e.IsZero() != (o == Behind || o == Equal) {
		t.Fatalf("%s beyond %s = %s, %t; Compare %s", a, b, e, ok, o)
	}
	u, err := a.Union(b)
	if err != nil || u.Compare(a) == Behind || u.Compare(a) == Diverged || u.Compare(b) == Behind || u.Compare(b) == Diverged {
		t.Fatalf("union %s of %s and %s: %v", u, a, b, err)
	}
	js, err := json.Marshal(a)
	var back Position
	if err != nil || json.Unmarshal(js, &back) != nil || back != a {
		t.Fatalf("JSON round trip of %s: %s → %s, %v", a, js, back, err)
	}
	if s, _ := a.GTIDSet(); true {
		if p, err := reparse(s); err != nil || p != a {
			t.Fatalf("text round trip of %q: %s, %v", s, p, err)
		}
	}
}

func TestGTIDPositionLaws(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	for _, e := range []struct {
		gen     func(*rand.Rand) Position
		reparse func(string) (Position, error)
	}{{randomMariaDB, MariaDBPosition}, {randomMySQL, MySQLPosition}} {
		seen := map[Order]int{}
		for i := 0; i < 3000; i++ {
			a, b, c := e.gen(r), e.gen(r), e.gen(r)
			checkOrderLaws(t, a, b, e.reparse)
			seen[a.Compare(b)]++
			// Cmp is transitive (a total order).
			if a.Cmp(b) <= 0 && b.Cmp(c) <= 0 && a.Cmp(c) > 0 {
				t.Fatalf("Cmp not transitive: %s ≤ %s ≤ %s but %s > %s", a, b, c, a, c)
			}
			// Containment is transitive.
			if ab, bc := a.Compare(b), b.Compare(c); (ab == Ahead || ab == Equal) && (bc == Ahead || bc == Equal) {
				if ac := a.Compare(c); ac != Ahead && ac != Equal {
					t.Fatalf("%s ⊇ %s ⊇ %s but %s %s", a, b, c, ac, c)
				}
			}
		}
		for _, o := range []Order{Behind, Equal, Ahead, Diverged} {
			if seen[o] == 0 {
				t.Errorf("random pairs never %s: the generator is too narrow (%v)", o, seen)
			}
		}
	}
}

func FuzzMariaDBPosition(f *testing.F) {
	f.Add("0-1-9,0-2-12", "0-1-10")
	f.Add("0-1-9", "1-1-9,0-1-3")
	f.Add("", "0-0-0")
	f.Fuzz(func(t *testing.T, x, y string) {
		a, errA := MariaDBPosition(x)
		b, errB := MariaDBPosition(y)
		if errA != nil || errB != nil {
			return
		}
		checkOrderLaws(t, a, b, MariaDBPosition)
	})
}

func FuzzMySQLPosition(f *testing.F) {
	f.Add(uA+":1-5:7", uA+":1-9")
	f.Add(uA+":1-3,"+uB+":2", uB+":1-2:t:1")
	f.Fuzz(func(t *testing.T, x, y string) {
		a, errA := MySQLPosition(x)
		b, errB := MySQLPosition(y)
		if errA != nil || errB != nil {
			return
		}
		checkOrderLaws(t, a, b, MySQLPosition)
	})
}
