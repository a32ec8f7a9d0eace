package integration

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// Linearizability of the cluster (issue 7). Clients read and write a few
// registers through random nodes of a three-node cluster while the test
// SIGKILLs nodes and restarts them; porcupine then checks that the history
// has a linearization: one order of the operations, each taking effect at
// one instant between its call and its return, in which every read returns
// the last value written.
//
// A register is a kv object holding one key (the built-in kv class: put is
// a write, get a read). Every write writes a value no other write writes,
// so a read names the write it saw.
//
// Outcomes the client cannot know are the crux. A write without an answer
// (no response, a connection reset, a timeout, a retryable 409/503/504) may
// have taken effect, now or later: it goes into the history with a return
// time after every other operation's, so the checker may place it anywhere
// after its call, or nowhere visible (one that no read observed is left
// out, which changes no verdict: linHistory). A read without an answer
// changed nothing and is left out. A request refused at connect (the node
// is down) was never sent and is left out. Every non-200 write is treated
// as ambiguous, even those that did not run (a 503 "overloaded", a failed
// activation load): that is always sound and only costs checking power.

const (
	linClients     = 8
	linRegisters   = 6 // two owned by each node while all three are up
	linOpTimeout   = 10 * time.Second
	linProgressMax = 60 * time.Second // bound on the wait for progress in a phase
	linCheckMax    = 60 * time.Second // bound on porcupine's search
	linKey         = "v"              // the key of each register's kv object
	linPhaseOps    = 25               // ok reads and writes of each register in a phase with every node up
)

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

// linRun is the clients and their history.
type linRun struct {
	c     *testCluster
	names []string // the registers' object names; index = regInput.Key
	start time.Time
	stop  context.CancelFunc
	wg    sync.WaitGroup
	mu    sync.Mutex
	ops   []linOp
}

// now is the run's clock: ns since start, monotonic.
func (h *linRun) now() int64 { return time.Since(h.start).Nanoseconds() }

func (h *linRun) add(op linOp) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *linRun) snapshot() []linOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// startClients starts linClients clients, each with its own seeded
// randomness, until stopClients.
func (h *linRun) startClients(seed uint64) {
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	for id := range linClients {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.client(ctx, id, rand.New(rand.NewPCG(seed, uint64(id))))
		}()
	}
}

// stopClients ends the clients (requests in flight finish) and returns the
// history.
func (h *linRun) stopClients() []linOp {
	h.stop()
	h.wg.Wait()
	return h.snapshot()
}

// client sends reads and writes of random registers to random running
// nodes until ctx ends. Its writes write (id+1)·10⁶ + n for its n-th write.
func (h *linRun) client(ctx context.Context, id int, rng *rand.Rand) {
	writes := int64(0)
	for ctx.Err() == nil {
		node := -1
		for _, i := range rng.Perm(len(h.c.nodes)) {
			if h.c.URL(i) != "" {
				node = i
				break
			}
		}
		op := linOp{client: id, in: regInput{Key: rng.IntN(len(h.names)), Write: rng.IntN(2) == 0}}
		if op.in.Write {
			writes++
			op.in.Value = int64(id+1)*1_000_000 + writes
		}
		if node >= 0 {
			op.via = h.c.Name(node)
			h.do(h.c.URL(node), &op)
			h.add(op)
		}
		if node < 0 || op.outcome != opOK {
			select { // do not spin on a node that is down
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// do sends op to the node at base and records what came back. Its context
// is not the clients': an operation in flight when they stop still gets its
// answer.
func (h *linRun) do(base string, op *linOp) {
	method, in := "get", any(map[string]string{"key": linKey})
	if op.in.Write {
		method, in = "put", map[string]any{"key": linKey, "value": op.in.Value}
	}
	body, _ := json.Marshal(in)
	ctx, cancel := context.WithTimeout(context.Background(), linOpTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/objects/kv/"+h.names[op.in.Key]+"/rpc/"+method, bytes.NewReader(body))
	if err != nil {
		panic(err) // a bad URL is the test's bug
	}
	op.call = h.now()
	resp, err := client.Do(req)
	if err != nil {
		op.ret, op.err, op.outcome = h.now(), err, opAmbiguous
		if errors.Is(err, syscall.ECONNREFUSED) {
			op.outcome = opRefused
		}
		return
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	op.ret, op.status = h.now(), resp.StatusCode
	switch {
	case err != nil:
		op.err, op.outcome = err, opAmbiguous
	case resp.StatusCode != http.StatusOK:
		op.err, op.outcome = fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b))), opAmbiguous
		op.wrong = !retryable(resp.StatusCode)
	case op.in.Write:
		op.outcome, op.ranOn = opOK, resp.Header.Get("Strata-Node")
	default:
		var out struct {
			Value json.RawMessage `json:"value"`
			Found bool            `json:"found"`
		}
		err := json.Unmarshal(b, &out)
		if err == nil && out.Found {
			err = json.Unmarshal(out.Value, &op.out.Value)
		}
		if err != nil {
			op.err, op.outcome, op.wrong = fmt.Errorf("read answered %q: %w", b, err), opAmbiguous, true
			return
		}
		op.outcome, op.ranOn = opOK, resp.Header.Get("Strata-Node")
	}
}

// progressed reports whether every register has n successful reads and n
// successful writes called at or after from.
func (h *linRun) progressed(from int64, n int) bool {
	read, wrote := map[int]int{}, map[int]int{}
	for _, op := range h.snapshot() {
		if op.outcome == opOK && op.call >= from {
			if op.in.Write {
				wrote[op.in.Key]++
			} else {
				read[op.in.Key]++
			}
		}
	}
	for k := range h.names {
		if read[k] < n || wrote[k] < n {
			return false
		}
	}
	return true
}

// waitProgress waits until every register was read and written n times
// after from, at most linProgressMax; past it the test fails (and goes on).
func (h *linRun) waitProgress(t *testing.T, phase string, from int64, n int) {
	t.Helper()
	if !waitFor(linProgressMax, func() bool { return h.progressed(from, n) }) {
		t.Errorf("%s: not every register was read and written %d times within %s", phase, n, linProgressMax)
	}
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

// pickRegisters reads candidate kv objects through node 0 until each node
// runs the turns of linRegisters/n of them (Strata-Node), and answers
// their names: every node then owns registers when the nemesis kills it.
func pickRegisters(t *testing.T, c *testCluster) []string {
	t.Helper()
	per := linRegisters / len(c.nodes)
	owned := map[string][]string{}
	var names []string
	for i := 0; len(names) < linRegisters; i++ {
		if i == 200 {
			t.Fatalf("200 kv objects read, owners of the picked ones: %v", owned)
		}
		name := fmt.Sprint("reg", i)
		req, _ := http.NewRequest(http.MethodPost, c.URL(0)+"/v1/objects/kv/"+name+"/rpc/get", strings.NewReader(`{"key":"`+linKey+`"}`))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("get kv/%s: %s", name, resp.Status)
		}
		node := resp.Header.Get("Strata-Node")
		if len(owned[node]) < per {
			owned[node] = append(owned[node], name)
			names = append(names, name)
		}
	}
	t.Logf("registers by owner: %v", owned)
	return names
}

// TestClusterLinearizableRegisters: eight clients read and write six
// registers through random nodes while a nemesis SIGKILLs each node in
// turn and restarts it: n3 after 3 s down, n1 once every register was read
// and written through the survivors, n2 at once (before the others even
// drop it from the membership). After each restart it waits until every
// register was read and written linPhaseOps times again. The history must
// be linearizable (porcupine), with progress in every phase.
func TestClusterLinearizableRegisters(t *testing.T) {
	c := startCluster(t, 3)
	h := &linRun{c: c, names: pickRegisters(t, c), start: time.Now()}
	seed := uint64(time.Now().UnixNano())
	t.Logf("client seed %d", seed)
	h.startClients(seed)
	t.Cleanup(func() { h.stopClients() }) // before the nodes are killed, on any exit

	type phase struct {
		name     string
		from, to int64
	}
	var phases []phase
	mark := func(name string) int64 {
		at := h.now()
		if n := len(phases); n > 0 {
			phases[n-1].to = at
		}
		phases = append(phases, phase{name: name, from: at})
		return at
	}
	h.waitProgress(t, "all up", mark("all up"), linPhaseOps)
	for _, victim := range []int{2, 0, 1} {
		name := c.Name(victim)
		killed := mark(name + " down")
		c.Kill(victim)
		switch victim {
		case 2:
			time.Sleep(3 * time.Second)
		case 0:
			h.waitProgress(t, name+" down", killed, 1)
		}
		mark(name + " restarting")
		c.Restart(victim)
		c.WaitLive(t, 3)
		h.waitProgress(t, name+" back", mark(name+" back"), linPhaseOps)
	}
	ops := h.stopClients()
	end := h.now()
	phases[len(phases)-1].to = end

	// What happened, phase by phase.
	type counts struct{ okRead, okWrite, ambWrite, ambRead, refused, observed int }
	var total counts
	var wrong []string
	statuses := map[int]int{}
	perPhase := make([]counts, len(phases))
	ranOn := make([]map[string]int, len(phases))
	for _, op := range ops {
		statuses[op.status]++
		if op.wrong {
			wrong = append(wrong, op.String())
		}
		var d *counts
		for i, p := range phases {
			if op.call >= p.from && op.call < p.to {
				d = &perPhase[i]
				if op.outcome == opOK {
					if ranOn[i] == nil {
						ranOn[i] = map[string]int{}
					}
					ranOn[i][op.ranOn]++
				}
			}
		}
		for _, x := range []*counts{&total, d} {
			if x == nil {
				continue
			}
			switch {
			case op.outcome == opRefused:
				x.refused++
			case op.outcome == opAmbiguous && op.in.Write:
				x.ambWrite++
			case op.outcome == opAmbiguous:
				x.ambRead++
			case op.in.Write:
				x.okWrite++
			default:
				x.okRead++
				if op.out.Value != 0 {
					x.observed++
				}
			}
		}
	}
	for i, p := range phases {
		d := perPhase[i]
		t.Logf("%-15s %6.1fs–%5.1fs: ok %4d reads (%4d of a written value) %4d writes; ambiguous %3d writes %3d reads; %3d refused; turns ran on %v",
			p.name, float64(p.from)/1e9, float64(p.to)/1e9, d.okRead, d.observed, d.okWrite, d.ambWrite, d.ambRead, d.refused, ranOn[i])
	}
	t.Logf("%d operations in %.1fs: ok %d reads (%d of a written value) and %d writes; ambiguous %d writes (open-ended) and %d reads (dropped); %d refused at connect (dropped); statuses %v",
		len(ops), float64(end)/1e9, total.okRead, total.observed, total.okWrite, total.ambWrite, total.ambRead, total.refused, statuses)
	if len(wrong) > 0 {
		t.Errorf("%d wrong answers (not 200, and not retryable), e.g.:\n%s", len(wrong), strings.Join(wrong[:min(len(wrong), 10)], "\n"))
	}
	// Progress: the test cannot pass by doing nothing.
	if total.okRead < 100 || total.okWrite < 100 || total.observed < 50 {
		t.Errorf("too little progress: %d ok reads (%d of a written value), %d ok writes", total.okRead, total.observed, total.okWrite)
	}
	for i, p := range phases {
		if (p.name == "all up" || strings.HasSuffix(p.name, " back")) && perPhase[i].okRead+perPhase[i].okWrite < 2*linPhaseOps*len(h.names) {
			t.Errorf("%s: only %d ok operations", p.name, perPhase[i].okRead+perPhase[i].okWrite)
		}
	}

	// Whether the nemesis hit the membership bucket's leader: the
	// survivors then hold their view while the bucket elects a new one.
	held := 0
	for i := range c.nodes {
		held += strings.Count(c.AllLogs(i), "holding the view")
	}
	t.Logf("membership views held while the members bucket stored nothing: %d times over the nodes", held)
	t.Logf("the run started at %s (operation times are seconds from then)", h.start.UTC().Format(time.RFC3339Nano))
	checkLinearizable(t, c, ops, end+1)
}

// checkLinearizable runs porcupine over ops' history. If it is not
// linearizable, or the search does not finish in time, it fails the test
// and writes the visualization, the failing registers' operations and the
// nodes' logs into a folder it names, and lists reads that are stale on
// their face.
func checkLinearizable(t *testing.T, c *testCluster, ops []linOp, end int64) {
	t.Helper()
	hist := linHistory(ops, end)
	kept := 0
	for _, op := range hist {
		if op.Return == end {
			kept++
		}
	}
	began := time.Now()
	res, info := porcupine.CheckOperationsVerbose(registerModel, hist, linCheckMax)
	t.Logf("porcupine: %s over %d operations (%d of them ambiguous writes that a read observed) in %s", res, len(hist), kept, time.Since(began).Round(time.Millisecond))
	if res == porcupine.Ok {
		return
	}
	dir, err := os.MkdirTemp("", "strata-linearizability-")
	if err != nil {
		t.Fatal(err)
	}
	var report []string
	for _, part := range registerModel.Partition(hist) {
		if porcupine.CheckOperationsTimeout(registerModel, part, linCheckMax/6) == porcupine.Ok {
			continue
		}
		key := part[0].Input.(regInput).Key
		slices.SortFunc(part, func(a, b porcupine.Operation) int { return cmp.Compare(a.Call, b.Call) })
		var lines []string
		for _, op := range part {
			lines = append(lines, fmt.Sprint(op.Metadata))
		}
		file := filepath.Join(dir, fmt.Sprintf("r%d.txt", key))
		os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
		report = append(report, fmt.Sprintf("r%d (%d operations): %s", key, len(part), file))
	}
	if err := porcupine.VisualizePath(registerModel, info, filepath.Join(dir, "history.html")); err != nil {
		t.Logf("visualize: %v", err)
	}
	for i := range c.nodes {
		os.WriteFile(filepath.Join(dir, c.Name(i)+".log"), []byte(clusterLines(c.AllLogs(i))), 0o644)
	}
	stale := staleReads(ops)
	t.Errorf("porcupine: %s: the history is not shown linearizable. Visualization %s; registers that fail:\n%s\n%d reads are stale on their face, e.g.:\n%s",
		res, filepath.Join(dir, "history.html"), strings.Join(report, "\n"), len(stale), strings.Join(stale[:min(len(stale), 5)], "\n"))
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
