package history

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checker accepts linearizable histories (overlapping operations in
// either order, an unknown write that took effect or not) and rejects a
// stale read and a read of a value nobody wrote.
func TestCheckRegister(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	w := func(c int, v int64, call, ret int) RegisterOp {
		return RegisterOp{Client: c, Write: true, Value: v, Call: at(call), Return: at(ret)}
	}
	r := func(c int, v int64, call, ret int) RegisterOp {
		return RegisterOp{Client: c, Value: v, Call: at(call), Return: at(ret)}
	}
	unknown := func(c int, v int64, call int) RegisterOp {
		return RegisterOp{Client: c, Write: true, Value: v, Call: at(call), Return: at(call + 1), Unknown: true}
	}
	for _, tc := range []struct {
		name string
		ops  []RegisterOp
		want porcupine.CheckResult
	}{
		{"sequential", []RegisterOp{w(0, 1, 0, 10), r(1, 1, 20, 30), w(0, 2, 40, 50), r(1, 2, 60, 70)}, porcupine.Ok},
		{"overlapping read sees either", []RegisterOp{w(0, 1, 0, 10), w(0, 2, 20, 50), r(1, 1, 25, 30), r(1, 2, 55, 60)}, porcupine.Ok},
		{"unknown write took effect", []RegisterOp{w(0, 1, 0, 10), unknown(0, 2, 20), r(1, 2, 100, 110)}, porcupine.Ok},
		{"unknown write never did", []RegisterOp{w(0, 1, 0, 10), unknown(0, 2, 20), r(1, 1, 100, 110)}, porcupine.Ok},
		{"stale read", []RegisterOp{w(0, 1, 0, 10), w(0, 2, 20, 30), r(1, 1, 40, 50)}, porcupine.Illegal},
		{"unknown write seen, then lost", []RegisterOp{w(0, 1, 0, 10), unknown(0, 2, 20), r(1, 2, 30, 40), r(1, 1, 50, 60)}, porcupine.Illegal},
		{"value nobody wrote", []RegisterOp{w(0, 1, 0, 10), r(1, 7, 20, 30)}, porcupine.Illegal},
	} {
		if got := CheckRegister(0, tc.ops, 10*time.Second); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
