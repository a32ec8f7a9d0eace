package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestClusterPartition (issue 22): three nodes, each in its own network
// namespace, routes on one bridge and clients on another. Under a small
// load of counter increments through all three, one node's route link is
// cut (packets dropped silently) for 30 s, then healed. Asserted: no
// acknowledged increment lost, none twice, every history gapless; the cut
// node answers without its lease with 503 no_lease; everything is served
// again after the heal. Measured and logged, not asserted tightly (they
// depend on the machine): cut to the majority serving every counter again,
// the cut node's answer time, the stall after the heal.
//
// STRATA_PARTITION_CUT sets the cut's length (a Go duration; default 30s).
func TestClusterPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30 s partition of a three-node cluster")
	}
	cutFor := 30 * time.Second
	if s := os.Getenv("STRATA_PARTITION_CUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("STRATA_PARTITION_CUT=%q: %v", s, err)
		}
		cutFor = d
	}
	lab := newNetLab(t, 3)
	c := startClusterIn(t, lab)
	names := counterNames(12)
	l := startLoad(c, names, []int{0, 1, 2}, 6, 0)
	defer l.stop()
	if !waitFor(time.Minute, func() bool { return countOK(l.snapshot(), time.Time{}) >= 3*len(names) }) {
		t.Fatalf("no steady load within a minute: %d increments acked", countOK(l.snapshot(), time.Time{}))
	}

	const victim = 2
	lab.Cut(victim)
	cut := time.Now()
	t.Logf("cut %s's route link for %s", c.Name(victim), cutFor)

	// The cut node, probed with reads while the cut lasts: when it gives up
	// its lease, and how fast it answers then.
	type probe struct {
		start, end time.Time
		status     int
		code       string
	}
	var probes []probe
	// When the cut node shows it lost its lease: its own goroutine, since
	// a probe admitted before the lapse may wait.
	leaseLost := time.Duration(-1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for time.Since(cut) < cutFor {
			if v, err := c.Status(victim); err == nil && !v.Leased {
				leaseLost = time.Since(cut)
				return
			}
			time.Sleep(20 * time.Millisecond) // polling
		}
	}()
	// Whether the majority keeps its leases through the cut and the heal
	// (the target; logged, not asserted yet).
	var majorityLapses []string
	majorityDone := make(chan struct{})
	stopMajority := make(chan struct{})
	go func() {
		defer close(majorityDone)
		held := map[int]bool{0: true, 1: true}
		for {
			select {
			case <-stopMajority:
				return
			case <-time.After(50 * time.Millisecond): // polling
			}
			for i := range held {
				v, err := c.Status(i)
				if err == nil && v.Leased != held[i] {
					held[i] = v.Leased
					majorityLapses = append(majorityLapses, fmt.Sprintf("%s leased=%v at cut+%s", c.Name(i), v.Leased, time.Since(cut).Round(10*time.Millisecond)))
				}
			}
		}
	}()
	probeClient := &http.Client{Timeout: 5 * time.Second}
	for time.Since(cut) < cutFor {
		p := probe{start: time.Now()}
		req, _ := http.NewRequest(http.MethodPost, c.URL(victim)+"/v1/objects/counter/"+names[0]+"/rpc/get", strings.NewReader("{}"))
		if resp, err := probeClient.Do(req); err == nil {
			var e errorReply
			json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			p.status, p.code = resp.StatusCode, e.Error.Code
		}
		p.end = time.Now()
		probes = append(probes, p)
		select { // pacing the probes, not waiting for anything
		case <-time.After(200 * time.Millisecond):
		case <-time.After(time.Until(cut.Add(cutFor))):
		}
	}
	<-watched
	lab.Heal(victim)
	heal := time.Now()
	t.Logf("healed after %s", heal.Sub(cut).Round(time.Millisecond))

	firstNoLease, slowestNoLease, noLeases := time.Duration(-1), time.Duration(0), 0
	for _, p := range probes {
		if p.code == "no_lease" {
			if firstNoLease < 0 {
				firstNoLease = p.end.Sub(cut)
			}
			noLeases++
			slowestNoLease = max(slowestNoLease, p.end.Sub(p.start))
		}
	}
	if noLeases == 0 {
		t.Errorf("the cut node never answered 503 no_lease in %s (%d probes; last: %+v)", cutFor, len(probes), probes[len(probes)-1])
	}

	// Served again through every node, the healed one too.
	if !waitFor(2*time.Minute, func() bool {
		for via := range c.nodes {
			if r := increment(c.URL(via), via, names[0], "after-heal-"+strconv.Itoa(via)+"-"+strconv.FormatInt(time.Now().UnixNano(), 10)); r.status == http.StatusOK {
				l.add(r)
				continue
			}
			return false
		}
		return true
	}) {
		t.Fatalf("not every node serves again two minutes after the heal\n%s", c.Logs(victim))
	}
	served := time.Since(heal)
	close(stopMajority)
	<-majorityDone
	t.Logf("the majority's lease changes from the cut to every node serving after the heal: %v", majorityLapses)
	// Let the load run past the heal, then stop it.
	waitFor(time.Minute, func() bool { return countOK(l.snapshot(), heal.Add(served)) >= 3*len(names) })
	results := l.stop()

	// Cut to the majority serving every counter again: for each counter, its
	// first increment acked through a majority node that started after the
	// cut.
	majorityServing := time.Duration(0)
	for _, name := range names {
		first := time.Duration(-1)
		for _, r := range results {
			if r.obj == name && r.via != victim && r.status == http.StatusOK && r.start.After(cut) {
				if d := r.end.Sub(cut); first < 0 || d < first {
					first = d
				}
			}
		}
		if first < 0 {
			t.Errorf("%s: no increment through the majority acked after the cut", name)
			continue
		}
		majorityServing = max(majorityServing, first)
	}
	perObj, obj, overall := longestGaps(results, heal, heal.Add(served).Add(10*time.Second))
	acked := checkCounters(t, c.URL(0), names, results)
	t.Logf("windows: cut→majority serving every counter %s; cut→the cut node without its lease %s; cut→first no_lease from the cut node %s; its no_lease answers %d, slowest %s; heal→every node serving %s; after the heal the longest gap in acks overall %s, per counter %s (%s); %d increments acked, %d sent",
		majorityServing.Round(time.Millisecond), leaseLost.Round(time.Millisecond), firstNoLease.Round(time.Millisecond), noLeases, slowestNoLease.Round(time.Microsecond),
		served.Round(time.Millisecond), overall.Round(time.Millisecond), perObj.Round(time.Millisecond), obj, acked, len(results))
}

// countOK counts the acked results that ended after from.
func countOK(rs []result, from time.Time) int {
	n := 0
	for _, r := range rs {
		if r.status == http.StatusOK && r.end.After(from) {
			n++
		}
	}
	return n
}
