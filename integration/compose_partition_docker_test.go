package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Partitions, pauses and the linearizability nemesis in containers (issue
// 19): one compose project (compose_docker_test.go's harness) for every
// subtest of TestDockerComposePartitions, since bringing three nodes up is
// the slow part. A partition is `docker network disconnect` of a node
// from the project's network: its routes to the other two go, and so does
// its published port (Docker forwards it over that network), so the host
// watches the cut node from inside with `docker exec <node> /strata …` on
// its loopback. The heal is `docker network connect --alias nK`, which
// gives the node its name on the network back.

var (
	composeCut     = flag.Duration("compose.cut", envDuration("STRATA_COMPOSE_CUT", 15*time.Second), "how long a container partition lasts")
	composeLinRuns = flag.Int("compose.lin-runs", envInt("STRATA_COMPOSE_LIN_RUNS", 1), "runs of the linearizability nemesis in containers (each: a partition, a kill and a pause)")
)

func envDuration(name string, def time.Duration) time.Duration {
	if s := os.Getenv(name); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			return d
		}
	}
	return def
}

// use points the cluster's helpers at t (a subtest) until the returned
// function runs: their Fatalf must run on the goroutine of the test that
// calls them. Subtests of one cluster run one after another.
func (d *dockerCluster) use(t *testing.T) (restore func()) {
	prev := d.t
	d.t = t
	return func() { d.t = prev }
}

// Len, Name and AllLogs make a dockerCluster a linCluster.
func (d *dockerCluster) Len() int { return len(d.ports) }

func (d *dockerCluster) Name(i int) string { return fmt.Sprintf("n%d", i+1) }

func (d *dockerCluster) AllLogs(i int) string {
	out, _ := exec.Command("docker", "logs", d.cid(i)).CombinedOutput()
	return string(out)
}

// containerIDs caches node containers' ids (project and index → id):
// asking compose takes a second or more on a busy machine, and kill,
// start, pause and network changes keep a container's id.
var containerIDs sync.Map

func (d *dockerCluster) cid(i int) string {
	key := fmt.Sprint(d.project, "/", i)
	if id, ok := containerIDs.Load(key); ok {
		return id.(string)
	}
	id := d.container(i)
	containerIDs.Store(key, id)
	return id
}

// network is the compose project's network (compose names it
// <project>_default).
func (d *dockerCluster) network() string { return d.project + "_default" }

// setDown marks node i down for the clients (as a load balancer whose
// health check failed would), or up again.
func (d *dockerCluster) setDown(i int, down bool) {
	d.mu.Lock()
	d.down[i] = down
	d.mu.Unlock()
}

// disconnect cuts node i off the network; clients leave it alone.
func (d *dockerCluster) disconnect(i int) {
	d.t.Helper()
	d.setDown(i, true)
	if out, err := exec.Command("docker", "network", "disconnect", d.network(), d.cid(i)).CombinedOutput(); err != nil {
		d.t.Fatalf("docker network disconnect %s: %v\n%s", d.Name(i), err, out)
	}
}

// connect heals node i: back on the network under its name; waits until
// its published port answers and every node lists all three.
func (d *dockerCluster) connect(i int) {
	d.t.Helper()
	if out, err := exec.Command("docker", "network", "connect", "--alias", d.Name(i), d.network(), d.cid(i)).CombinedOutput(); err != nil {
		d.t.Fatalf("docker network connect %s: %v\n%s", d.Name(i), err, out)
	}
	d.setDown(i, false)
	for j := range d.ports {
		d.waitLive(j)
	}
}

// pause freezes node i's processes (`docker pause`: the cgroup freezer);
// unpause thaws them. A paused node's port still accepts connections
// (Docker's proxy), which then wait.
//
// The freezer cannot freeze a task in uninterruptible sleep (a node's
// fsync): runc retries for a while, then thaws the container and fails
// with "unable to freeze", which two clusters' disk load made happen in
// CI. Such a pause is tried again; the node ran on meanwhile.
func (d *dockerCluster) pause(i int) {
	d.t.Helper()
	for attempt := 1; ; attempt++ {
		out, err := exec.Command("docker", "pause", d.cid(i)).CombinedOutput()
		if err == nil {
			return
		}
		if attempt == pauseAttempts || !strings.Contains(string(out), "unable to freeze") {
			d.t.Fatalf("docker pause %s (attempt %d): %v\n%s", d.Name(i), attempt, err, out)
		}
		d.t.Logf("docker pause %s (attempt %d): %v: %s; again", d.Name(i), attempt, err, strings.TrimSpace(string(out)))
		time.Sleep(100 * time.Millisecond)
	}
}

// pauseAttempts bounds pause's tries.
const pauseAttempts = 5

func (d *dockerCluster) unpause(i int) {
	d.t.Helper()
	if out, err := exec.Command("docker", "unpause", d.cid(i)).CombinedOutput(); err != nil {
		d.t.Fatalf("docker unpause %s: %v\n%s", d.Name(i), err, out)
	}
}

// inside runs the node's own binary in its container against its own
// gateway on loopback (reachable while the node is cut off), with the
// admin token.
func (d *dockerCluster) inside(i int, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := append([]string{"exec", "-e", "STRATA_TOKEN=" + d.token, d.cid(i), "/strata"}, args...)
	out, err := exec.CommandContext(ctx, "docker", c...).CombinedOutput()
	return string(out), err
}

// insideStatus is node i's GET /v1/cluster, asked from inside.
func (d *dockerCluster) insideStatus(i int) (clusterView, error) {
	var v clusterView
	out, err := d.inside(i, "cluster", "--url", "http://127.0.0.1:8080", "--json", "--timeout", "5s")
	if err != nil {
		return v, fmt.Errorf("%v: %s", err, firstLines(out, 3))
	}
	return v, json.Unmarshal([]byte(out), &v)
}

// raftView is GET /v1/cluster/raft.
type raftView struct {
	Node       string `json:"node"`
	StandingBy bool   `json:"standing_by"`
	MetaLeader string `json:"meta_leader"`
	MetaSize   int    `json:"meta_size"`
	Streams    []struct {
		Name     string `json:"name"`
		Leader   string `json:"leader"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Lag     uint64 `json:"lag"`
		} `json:"replicas"`
	} `json:"streams"`
}

// raft is node i's GET /v1/cluster/raft through its published port.
func (d *dockerCluster) raft(i int) (raftView, error) {
	var v raftView
	_, err := getJSON(d.URL(i)+"/v1/cluster/raft", &v)
	return v, err
}

// metaLeader waits until the three nodes name one JetStream meta leader,
// and answers its index.
func (d *dockerCluster) metaLeader() int {
	d.t.Helper()
	var last []string
	leader := ""
	if !waitFor(time.Minute, func() bool {
		last, leader = nil, ""
		for i := range d.ports {
			v, err := d.raft(i)
			last = append(last, fmt.Sprintf("%s: %q %v", d.Name(i), v.MetaLeader, err))
			if err != nil || v.MetaLeader == "" || leader != "" && v.MetaLeader != leader {
				return false
			}
			leader = v.MetaLeader
		}
		return true
	}) {
		d.t.Fatalf("the nodes do not agree on a meta leader: %v", last)
	}
	for i := range d.ports {
		if d.Name(i) == leader {
			return i
		}
	}
	d.t.Fatalf("meta leader %q is no node", leader)
	return -1
}

// waitLeased waits until every node holds its membership lease.
func (d *dockerCluster) waitLeased() {
	d.t.Helper()
	var last []string
	if !waitFor(2*time.Minute, func() bool {
		last = nil
		for i := range d.ports {
			var v clusterView
			if _, err := getJSON(d.URL(i)+"/v1/cluster", &v); err != nil || !v.Leased {
				last = append(last, fmt.Sprintf("%s: leased %v, %v", d.Name(i), v.Leased, err))
			}
		}
		return len(last) == 0
	}) {
		d.t.Fatalf("not every node holds its lease after 2 minutes: %v", last)
	}
}

// TestDockerComposePartitions: one compose project, in order: a node cut
// off under load, the JetStream meta leader cut off under load, and the
// linearizability nemesis (partitions, kills and pauses) -compose.lin-runs
// times.
func TestDockerComposePartitions(t *testing.T) {
	d := startDockerCluster(t)
	t.Run("node", func(t *testing.T) {
		defer d.use(t)()
		partitionUnderLoad(t, d, 2, "pn")
	})
	t.Run("meta-leader", func(t *testing.T) {
		defer d.use(t)()
		leader := d.metaLeader()
		t.Logf("the JetStream meta leader is %s (GET /v1/cluster/raft on every node)", d.Name(leader))
		partitionUnderLoad(t, d, leader, "pm")
	})
	t.Run("linearizable", func(t *testing.T) {
		defer d.use(t)()
		for run := range *composeLinRuns {
			t.Run(fmt.Sprint("run", run+1), func(t *testing.T) {
				defer d.use(t)()
				linearizableInContainers(t, d, run)
			})
		}
	})
}

// partitionUnderLoad cuts node victim off the network for -compose.cut
// while six clients increment twelve counters (named prefix0…) through
// the nodes the test has not cut, then heals it. Asserted: the cut node
// gives up its lease (GET /v1/cluster from inside says leased false) and
// then refuses a call with 503 no_lease; the other two serve every
// counter again; after the heal the cut node runs turns again; no
// acknowledged increment is lost, none ran twice, every history is
// gapless. Measured and logged: cut → the cut node without its lease,
// cut → the majority serving every counter, the majority's own lease
// changes, the longest wait for an acknowledged write, heal → serving.
func partitionUnderLoad(t *testing.T, d *dockerCluster, victim int, prefix string) {
	names := make([]string, 12)
	for i := range names {
		names[i] = fmt.Sprint(prefix, i)
	}
	vname := d.Name(victim)
	d.waitLeased()
	l := d.startLoad(names, 6)
	defer l.stop()
	if !waitFor(time.Minute, func() bool { return len(ackedAfter(l.snapshot(), time.Time{})) == len(names) }) {
		t.Fatalf("the load wrote not every counter within a minute: %v", ackedAfter(l.stop(), time.Time{}))
	}
	var ranBefore []string
	for _, r := range l.snapshot() {
		if r.status == http.StatusOK && r.ranOn == vname && !slices.Contains(ranBefore, r.obj) {
			ranBefore = append(ranBefore, r.obj)
		}
	}
	var rv raftView
	for j := range d.ports {
		if j != victim {
			rv, _ = d.raft(j)
			break
		}
	}
	var led []string
	for _, s := range rv.Streams {
		if s.Leader == vname {
			led = append(led, s.Name)
		}
	}
	t.Logf("before the cut: %s runs %v; meta leader %s; %s leads streams %v", vname, ranBefore, rv.MetaLeader, vname, led)

	d.disconnect(victim)
	cut := time.Now()
	t.Logf("docker network disconnect %s for %s", vname, *composeCut)

	// The majority: its lease changes, and (when the meta leader was cut)
	// when it names a new meta leader.
	stop := make(chan struct{})
	watched := make(chan struct{})
	var lapses []string
	newMeta := time.Duration(-1)
	go func() {
		defer close(watched)
		held := map[int]bool{}
		for j := range d.ports {
			if j != victim {
				held[j] = true
			}
		}
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond): // polling
			}
			for j := range held {
				var v clusterView
				if _, err := getJSON(d.URL(j)+"/v1/cluster", &v); err == nil && v.Leased != held[j] {
					held[j] = v.Leased
					lapses = append(lapses, fmt.Sprintf("%s leased=%v at cut+%s", d.Name(j), v.Leased, time.Since(cut).Round(10*time.Millisecond)))
				}
				if newMeta < 0 {
					if v, err := d.raft(j); err == nil && v.MetaLeader != "" && v.MetaLeader != vname {
						newMeta = time.Since(cut)
					}
				}
			}
		}
	}()

	// The cut node, from inside: when it gives up its lease, then a call.
	leaseLost := time.Duration(-1)
	var lastStatus string
	for time.Since(cut) < *composeCut {
		v, err := d.insideStatus(victim)
		if err == nil && !v.Leased {
			leaseLost = time.Since(cut)
			break
		}
		lastStatus = fmt.Sprintf("%+v %v", v, err)
		time.Sleep(200 * time.Millisecond) // polling
	}
	if leaseLost < 0 {
		t.Errorf("%s kept its lease through a %s cut: %s", vname, *composeCut, lastStatus)
	} else {
		out, err := d.inside(victim, "call", "--url", "http://127.0.0.1:8080", "--retries", "0", "--timeout", "10s", "counter", names[0], "get")
		if err == nil || !strings.Contains(out, "no_lease") {
			t.Errorf("%s without its lease answered a call: %v\n%s", vname, err, firstLines(out, 5))
		}
	}
	// Every counter served by the majority again.
	if !waitFor(time.Minute, func() bool { return len(ackedAfter(l.snapshot(), cut)) == len(names) }) {
		t.Errorf("the majority did not serve every counter within a minute of the cut: %v", ackedAfter(l.snapshot(), cut))
	}
	time.Sleep(time.Until(cut.Add(*composeCut))) // the cut lasts its length
	heal := time.Now()
	d.connect(victim)
	healed := time.Now()
	if !waitFor(time.Minute, func() bool {
		for _, r := range l.snapshot() {
			if r.status == http.StatusOK && r.start.After(healed) && r.ranOn == vname {
				return true
			}
		}
		return false
	}) {
		t.Errorf("no turn ran on %s within a minute of the heal", vname)
	}
	close(stop)
	<-watched
	results := l.stop()
	acked := checkCounters(t, d.URL(0), names, results)

	majorityServing := time.Duration(0)
	for _, name := range names {
		first := time.Duration(-1)
		for _, r := range results {
			if r.obj == name && r.status == http.StatusOK && r.start.After(cut) {
				if dd := r.end.Sub(cut); first < 0 || dd < first {
					first = dd
				}
			}
		}
		majorityServing = max(majorityServing, first)
	}
	for _, r := range results {
		if r.status == http.StatusOK && r.ranOn == vname && r.start.After(cut) && r.end.Before(heal) {
			t.Errorf("%s (%s), sent after the cut and answered before the heal, ran on %s, which was cut off", r.obj, r.token, vname)
		}
	}
	perObjCut, objCut, overallCut := longestGaps(results, cut, heal)
	perObjHeal, objHeal, overallHeal := longestGaps(results, heal, time.Now())
	retried, statuses := 0, map[string]int{}
	for _, r := range results {
		if r.status != http.StatusOK {
			retried++
			code := fmt.Sprint(r.status)
			var e errorReply
			if r.err != nil {
				if _, body, ok := strings.Cut(r.err.Error(), " "); ok && json.Unmarshal([]byte(body), &e) == nil && e.Error.Code != "" {
					code += " " + e.Error.Code
				}
			}
			statuses[code]++
		}
	}
	t.Logf("the majority's lease changes: %v", lapses)
	t.Logf("windows: cut→%s without its lease %s; cut→the majority names a meta leader other than %s %s; cut→majority serving every counter %s; longest wait for a counter's next ack from the cut %s (%s), for any ack %s; from the heal %s (%s), any %s; heal→%s listed by all %s",
		vname, leaseLost.Round(time.Millisecond), vname, newMeta.Round(time.Millisecond), majorityServing.Round(time.Millisecond),
		perObjCut.Round(time.Millisecond), objCut, overallCut.Round(time.Millisecond),
		perObjHeal.Round(time.Millisecond), objHeal, overallHeal.Round(time.Millisecond), vname, healed.Sub(heal).Round(100*time.Millisecond))
	t.Logf("%d of %d increments acknowledged, %d retryable failures %v", acked, len(results), retried, statuses)
}

// linFaultHold is how long a fault of the container nemesis lasts at
// least, from its docker command's return: past --node-ttl (3 s), so the
// others take the node's objects over before it comes back.
const linFaultHold = 8 * time.Second

// linearizableInContainers is the register test of
// cluster_linearizability_test.go with a container nemesis: with every
// node up, then a node cut off the network, killed (`docker kill`) and
// paused (`docker pause`), one different node each (rotating with run),
// each fault held linFaultHold from its docker command's return and (but
// a pause) until every register was read and written through the others,
// and every node healed and each register read and written linPhaseOps
// times between faults. Clients leave a cut or killed node alone and keep sending to a
// paused one (its requests wait, then run after the thaw). The history
// must be linearizable.
func linearizableInContainers(t *testing.T, d *dockerCluster, run int) {
	d.waitLeased()
	h := &linRun{c: d, names: pickRegisters(t, d, fmt.Sprintf("lin%d-", run)), start: time.Now()}
	seed := uint64(time.Now().UnixNano())
	t.Logf("client seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	h.startClients(seed)
	defer h.stopClients()

	h.waitProgress(t, "all up", h.mark("all up"), linPhaseOps)
	victims := rng.Perm(3)
	for k, fault := range []string{"cut", "killed", "paused"} {
		v := victims[(k+run)%3]
		name := d.Name(v)
		// The docker command's own time is a phase of its own: under
		// load it takes seconds, and the fault holds from its return.
		h.mark(name + " " + fault + " (docker)")
		began := time.Now()
		switch fault {
		case "cut":
			d.disconnect(v)
		case "killed":
			d.kill(v)
		case "paused":
			d.pause(v)
		}
		took := time.Since(began)
		in := h.mark(name + " " + fault)
		held := time.Now().Add(linFaultHold)
		if fault != "paused" { // clients wait on a paused node: little progress
			h.waitProgress(t, name+" "+fault, in, 1)
		}
		time.Sleep(time.Until(held))
		h.mark(name + " healing")
		switch fault {
		case "cut":
			d.connect(v)
		case "killed":
			d.start(v)
		case "paused":
			d.unpause(v)
			for j := range d.ports {
				d.waitLive(j)
			}
		}
		h.waitProgress(t, name+" back", h.mark(name+" back"), linPhaseOps)
		t.Logf("%s %s: the docker command took %s", name, fault, took.Round(10*time.Millisecond))
	}
	ops := h.stopClients()
	end := h.now()
	h.report(t, ops, end)
	t.Logf("the run started at %s (operation times are seconds from then)", h.start.UTC().Format(time.RFC3339Nano))
	checkLinearizable(t, d, ops, end+1)
}
