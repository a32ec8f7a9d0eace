package integration

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"
)

// The model of the linearizability test (cluster_linearizability_test.go)
// and the history porcupine checks, with their own test on small
// histories whose answers are known.

// regInput and regOutput are porcupine's Input and Output.
type regInput struct {
	Key   int // the register's index
	Write bool
	Value int64 // the value written
}

type regOutput struct {
	Value int64 // the value read; 0: never written
}

// registerModel is the sequential specification: one register per key,
// starting at 0.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[int][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(regInput).Key
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]int, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Ints(keys)
		out := make([][]porcupine.Operation, len(keys))
		for i, k := range keys {
			out[i] = byKey[k]
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.Write {
			return true, in.Value
		}
		return output.(regOutput).Value == state.(int64), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.Write {
			return fmt.Sprintf("r%d ← %d", in.Key, in.Value)
		}
		return fmt.Sprintf("r%d → %d", in.Key, output.(regOutput).Value)
	},
	DescribeState:             func(state any) string { return fmt.Sprint(state) },
	DescribeOperationMetadata: func(info any) string { return fmt.Sprint(info) },
}

// outcome is what the client knows of an operation.
type outcome int

const (
	opOK        outcome = iota // answered 200
	opAmbiguous                // sent, no definite answer: a write may have happened
	opRefused                  // refused at connect: never sent, nothing happened
)

// linOp is one operation as a client saw it.
type linOp struct {
	client    int
	in        regInput
	out       regOutput
	call, ret int64 // ns since the run's start, on one monotonic clock
	outcome   outcome
	status    int    // HTTP status; 0: none
	wrong     bool   // an answer no request may get (a 4xx other than 409, a 500, an unreadable 200)
	via       string // the node it was sent to
	ranOn     string // Strata-Node of a 200
	err       error
}

func (op linOp) String() string {
	s := registerModel.DescribeOperation(op.in, op.out)
	if op.in.Write && op.outcome != opOK {
		s = fmt.Sprintf("r%d ← %d?", op.in.Key, op.in.Value)
	}
	s += fmt.Sprintf(" [%.3fs, %.3fs] c%d via %s", float64(op.call)/1e9, float64(op.ret)/1e9, op.client, op.via)
	if op.ranOn != "" {
		s += " ran on " + op.ranOn
	}
	if op.err != nil {
		msg := op.err.Error()
		if len(msg) > 400 {
			msg = msg[:400] + "…"
		}
		s += ": " + msg
	}
	return s
}

// linHistory is the ops as porcupine takes them: refused ops and ambiguous
// reads left out, ambiguous writes returning at end (after every other
// op), each on a client of its own so the visualization stays readable.
//
// An ambiguous write whose value no successful read returned is left out
// too. That changes no verdict: it may take effect after every other
// operation, where it explains or breaks nothing (values are unique, so no
// read depends on it), and a linearization that has it elsewhere stays one
// without it (no read sits between it and the next write). Keeping them
// makes the search exponential: a register that refuses writes for a few
// seconds collects a hundred of them, and porcupine tries their subsets.
func linHistory(ops []linOp, end int64) []porcupine.Operation {
	observed := map[[2]int64]bool{} // register, value read
	for _, op := range ops {
		if !op.in.Write && op.outcome == opOK {
			observed[[2]int64{int64(op.in.Key), op.out.Value}] = true
		}
	}
	var out []porcupine.Operation
	extra := linClients
	for _, op := range ops {
		p := porcupine.Operation{ClientId: op.client, Input: op.in, Call: op.call, Output: op.out, Return: op.ret, Metadata: op.String()}
		switch {
		case op.outcome == opRefused:
			continue
		case op.outcome == opAmbiguous && !op.in.Write:
			continue
		case op.outcome == opAmbiguous && !observed[[2]int64{int64(op.in.Key), op.in.Value}]:
			continue
		case op.outcome == opAmbiguous:
			p.Return, p.ClientId = end, extra
			extra++
		}
		out = append(out, p)
	}
	return out
}

// staleReads lists the successful reads that returned a value some
// acknowledged write had overwritten before the read was called: the
// read's value was written by a write that returned before another write
// of the register was called, and that one returned before the read was
// called. (Porcupine finds every violation; these explain the plain ones.)
func staleReads(ops []linOp) []string {
	wrote := map[[2]int64]linOp{} // register, value → its write
	for _, op := range ops {
		if op.in.Write {
			wrote[[2]int64{int64(op.in.Key), op.in.Value}] = op
		}
	}
	var out []string
	for _, rd := range ops {
		if rd.in.Write || rd.outcome != opOK {
			continue
		}
		src, ok := wrote[[2]int64{int64(rd.in.Key), rd.out.Value}]
		srcRet := int64(-1) // the initial value: "written" before everything
		if rd.out.Value != 0 {
			if !ok || src.outcome != opOK {
				continue // an ambiguous write may land any time
			}
			srcRet = src.ret
		}
		for _, w := range ops {
			if w.in.Write && w.outcome == opOK && w.in.Key == rd.in.Key && w.in.Value != rd.out.Value && w.call > srcRet && w.ret < rd.call {
				from := "the initial value"
				if rd.out.Value != 0 {
					from = "written by " + src.String()
				}
				out = append(out, fmt.Sprintf("%s\n    %s\n    overwritten by %s", rd, from, w))
				break
			}
		}
	}
	return out
}

// TestRegisterModel: the model and the modelling of ambiguous writes on
// small histories with known answers, so a pass of the cluster test means
// something. Times are arbitrary units; never is an ambiguous write's
// return.
func TestRegisterModel(t *testing.T) {
	const never = 1 << 40
	w := func(client int, v int64, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: regInput{Write: true, Value: v}, Call: call, Return: ret}
	}
	r := func(client int, v int64, call, ret int64) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: regInput{}, Output: regOutput{Value: v}, Call: call, Return: ret}
	}
	cases := []struct {
		name string
		hist []porcupine.Operation
		ok   bool
	}{
		{"read of the initial value", []porcupine.Operation{r(0, 0, 0, 1)}, true},
		{"read after a write", []porcupine.Operation{w(0, 7, 0, 1), r(1, 7, 2, 3)}, true},
		{"stale read after an acknowledged write", []porcupine.Operation{w(0, 7, 0, 1), r(1, 0, 2, 3)}, false},
		{"read of a value never written", []porcupine.Operation{w(0, 7, 0, 1), r(1, 8, 2, 3)}, false},
		{"concurrent read sees either", []porcupine.Operation{w(0, 7, 0, 10), r(1, 0, 2, 3), r(2, 7, 4, 5)}, true},
		{"reads go back in time", []porcupine.Operation{w(0, 7, 0, 10), r(1, 7, 2, 3), r(2, 0, 4, 5)}, false},
		{"ambiguous write seen late", []porcupine.Operation{w(3, 9, 0, never), w(0, 7, 2, 3), r(1, 9, 4, 5)}, true},
		{"ambiguous write never seen", []porcupine.Operation{w(3, 9, 0, never), w(0, 7, 2, 3), r(1, 7, 4, 5)}, true},
		{"ambiguous write seen, then undone", []porcupine.Operation{w(3, 9, 0, never), w(0, 7, 2, 3), r(1, 9, 4, 5), r(1, 7, 6, 7)}, false},
		{"ambiguous write seen before its call", []porcupine.Operation{r(1, 9, 0, 1), w(3, 9, 2, never)}, false},
	}
	for _, tc := range cases { // all on register 0
		if got := porcupine.CheckOperations(registerModel, tc.hist); got != tc.ok {
			t.Errorf("%s: linearizable %v, want %v", tc.name, got, tc.ok)
		}
	}
	// Registers are independent: a stale read of one fails the whole.
	hist := []porcupine.Operation{w(0, 7, 0, 1), r(1, 7, 2, 3), w(2, 8, 0, 1), r(3, 0, 2, 3)}
	for i := range hist {
		in := hist[i].Input.(regInput)
		in.Key = i / 2
		hist[i].Input = in
	}
	if porcupine.CheckOperations(registerModel, hist) {
		t.Error("a stale read of register 1 passed")
	}
	// The history built from outcomes: refused ops and ambiguous reads
	// are left out, an ambiguous write returns at end.
	ops := []linOp{
		{client: 0, in: regInput{Write: true, Value: 5}, call: 1, ret: 2, outcome: opAmbiguous},
		{client: 1, in: regInput{}, out: regOutput{Value: 3}, call: 1, ret: 2, outcome: opAmbiguous},
		{client: 2, in: regInput{Write: true, Value: 6}, call: 1, ret: 2, outcome: opRefused},
		{client: 3, in: regInput{}, out: regOutput{Value: 5}, call: 3, ret: 4, outcome: opOK},
	}
	got := linHistory(ops, 100)
	if len(got) != 2 || got[0].Return != 100 || got[0].ClientId != linClients || got[1].Return != 4 {
		t.Errorf("linHistory: %+v", got)
	}
	// An ambiguous write nobody read is left out.
	ops = append(ops, linOp{client: 4, in: regInput{Write: true, Value: 8}, call: 1, ret: 2, outcome: opAmbiguous})
	if got := linHistory(ops, 100); len(got) != 2 {
		t.Errorf("linHistory kept an ambiguous write nobody read: %+v", got)
	}
	// staleReads names the plain ones.
	ops = []linOp{
		{in: regInput{Write: true, Value: 5}, call: 1, ret: 2},
		{in: regInput{Write: true, Value: 6}, call: 3, ret: 4},
		{in: regInput{}, out: regOutput{Value: 6}, call: 5, ret: 6},
		{in: regInput{}, out: regOutput{Value: 5}, call: 5, ret: 6}, // stale
		{in: regInput{}, out: regOutput{Value: 0}, call: 5, ret: 6}, // stale
		{in: regInput{Write: true, Value: 7}, call: 7, ret: 8, outcome: opAmbiguous},
		{in: regInput{}, out: regOutput{Value: 7}, call: 9, ret: 10},
		{in: regInput{}, out: regOutput{Value: 6}, call: 9, ret: 10}, // not on its face: 7 may not have landed
	}
	if got := staleReads(ops); len(got) != 2 {
		t.Errorf("staleReads found %d, want 2:\n%s", len(got), strings.Join(got, "\n"))
	}
}
