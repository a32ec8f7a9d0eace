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

// linCluster is the cluster the clients talk to: processes
// (testCluster) or containers (dockerCluster).
type linCluster interface {
	Len() int
	URL(i int) string // "" while the test has node i down
	Name(i int) string
	AllLogs(i int) string
}

// linRun is the clients and their history.
type linRun struct {
	c     linCluster
	names []string // the registers' object names; index = regInput.Key
	start time.Time
	stop  context.CancelFunc
	wg    sync.WaitGroup
	recorder[linOp]
	phases []linPhase // the nemesis's steps (mark)
}

// now is the run's clock: ns since start, monotonic.
func (h *linRun) now() int64 { return time.Since(h.start).Nanoseconds() }

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
		for _, i := range rng.Perm(h.c.Len()) {
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

// pickRegisters reads candidate kv objects through node 0 until each node
// runs the turns of linRegisters/n of them (Strata-Node), and answers
// their names: every node then owns registers when the nemesis kills it.
func pickRegisters(t *testing.T, c linCluster, prefix string) []string {
	t.Helper()
	per := linRegisters / c.Len()
	owned := map[string][]string{}
	var names []string
	for i := 0; len(names) < linRegisters; i++ {
		if i == 200 {
			t.Fatalf("200 kv objects read, owners of the picked ones: %v", owned)
		}
		name := fmt.Sprint(prefix, i)
		var status int
		var node string
		var err error
		// A cluster that just healed may answer retryably for a while.
		waitFor(linProgressMax, func() bool {
			status, node, _, err = rpc(context.Background(), c.URL(0), "kv", name, "get", map[string]string{"key": linKey})
			return err == nil && !retryable(status)
		})
		if err != nil || status != http.StatusOK {
			t.Fatalf("get kv/%s: %d %v", name, status, err)
		}
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
	h := &linRun{c: c, names: pickRegisters(t, c, "reg"), start: time.Now()}
	seed := uint64(time.Now().UnixNano())
	t.Logf("client seed %d", seed)
	h.startClients(seed)
	t.Cleanup(func() { h.stopClients() }) // before the nodes are killed, on any exit

	h.waitProgress(t, "all up", h.mark("all up"), linPhaseOps)
	for _, victim := range []int{2, 0, 1} {
		name := c.Name(victim)
		killed := h.mark(name + " down")
		c.Kill(victim)
		switch victim {
		case 2:
			time.Sleep(3 * time.Second)
		case 0:
			h.waitProgress(t, name+" down", killed, 1)
		}
		h.mark(name + " restarting")
		c.Restart(victim)
		c.WaitLive(t, 3)
		h.waitProgress(t, name+" back", h.mark(name+" back"), linPhaseOps)
	}
	ops := h.stopClients()
	end := h.now()
	h.report(t, ops, end)

	// Whether the nemesis hit the membership bucket's leader: the
	// survivors then hold their view while the bucket elects a new one.
	held, lapsed := 0, 0
	for i := range c.nodes {
		held += strings.Count(c.AllLogs(i), "holding the view")
		lapsed += strings.Count(c.AllLogs(i), "membership lease ran out")
	}
	t.Logf("membership views held while the members bucket stored nothing: %d times over the nodes; leases lapsed (every activation released): %d times", held, lapsed)
	t.Logf("the run started at %s (operation times are seconds from then)", h.start.UTC().Format(time.RFC3339Nano))
	checkLinearizable(t, c, ops, end+1)
}

// linPhase is a stretch of a run between two nemesis steps.
type linPhase struct {
	name     string
	from, to int64
}

// mark ends the current phase and starts the one named, now; it answers
// the time.
func (h *linRun) mark(name string) int64 {
	at := h.now()
	if n := len(h.phases); n > 0 {
		h.phases[n-1].to = at
	}
	h.phases = append(h.phases, linPhase{name: name, from: at})
	return at
}

// report logs what happened phase by phase and fails the test on a wrong
// answer, too little progress overall, or a phase with every node up
// ("all up", "… back") with fewer than linPhaseOps reads and writes of
// every register.
func (h *linRun) report(t *testing.T, ops []linOp, end int64) {
	t.Helper()
	phases := h.phases
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

}

// checkLinearizable runs porcupine over ops' history. If it is not
// linearizable, or the search does not finish in time, it fails the test
// and writes the visualization, the failing registers' operations and the
// nodes' logs into a folder it names, and lists reads that are stale on
// their face.
func checkLinearizable(t *testing.T, c linCluster, ops []linOp, end int64) {
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
	for i := range c.Len() {
		os.WriteFile(filepath.Join(dir, c.Name(i)+".log"), []byte(clusterLines(c.AllLogs(i))), 0o644)
	}
	stale := staleReads(ops)
	t.Errorf("porcupine: %s: the history is not shown linearizable. Visualization %s; registers that fail:\n%s\n%d reads are stale on their face, e.g.:\n%s",
		res, filepath.Join(dir, "history.html"), strings.Join(report, "\n"), len(stale), strings.Join(stale[:min(len(stale), 5)], "\n"))
}
