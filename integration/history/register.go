package history

import (
	"fmt"
	"math"
	"time"

	"github.com/anishathalye/porcupine"
)

// RegisterOp is one operation of a register workload (one row, one value)
// as a client saw it: a write of Value, or a read that returned Value,
// called at Call and answered at Return. A write whose outcome the client
// cannot know (its connection failed before the answer: it may or may not
// have committed) has Unknown set: it may take effect at any time after its
// call, so the checker leaves it pending to the end of the history. A read
// that failed is no operation at all and is left out by the caller.
type RegisterOp struct {
	Client  int
	Write   bool
	Value   int64
	Call    time.Time
	Return  time.Time
	Unknown bool
}

// registerInput is what a porcupine operation is asked to do.
type registerInput struct {
	write bool
	value int64
}

// registerModel is a single register holding an int64, initially init.
func registerModel(init int64) porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { return init },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			in := input.(registerInput)
			if in.write {
				return true, in.value
			}
			return output.(int64) == state.(int64), state
		},
		Equal: func(a, b interface{}) bool { return a.(int64) == b.(int64) },
		DescribeOperation: func(input, output interface{}) string {
			in := input.(registerInput)
			if in.write {
				return fmt.Sprintf("write(%d)", in.value)
			}
			return fmt.Sprintf("read() = %d", output.(int64))
		},
	}
}

// CheckRegister reports whether ops, a history of a register that held
// init before the first of them, is linearizable: whether there is one
// order of the operations, each taking effect at an instant between its
// call and its return (an Unknown write: at any instant after its call, or
// never), in which every read returns the value of the latest write before
// it. It gives up after timeout (porcupine.Unknown).
func CheckRegister(init int64, ops []RegisterOp, timeout time.Duration) porcupine.CheckResult {
	if len(ops) == 0 {
		return porcupine.Ok
	}
	t0 := ops[0].Call
	for _, o := range ops {
		if o.Call.Before(t0) {
			t0 = o.Call
		}
	}
	hist := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		ret := o.Return.Sub(t0).Nanoseconds()
		if o.Unknown {
			ret = math.MaxInt64
		}
		hist = append(hist, porcupine.Operation{ClientId: o.Client, Input: registerInput{write: o.Write, value: o.Value},
			Call: o.Call.Sub(t0).Nanoseconds(), Output: o.Value, Return: ret})
	}
	return porcupine.CheckOperationsTimeout(registerModel(init), hist, timeout)
}
