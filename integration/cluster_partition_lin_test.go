package integration

import (
	"os"
	"strings"
	"testing"
	"time"
)

// TestClusterPartitionLinearizable (issue 22): the linearizability
// clients of TestClusterLinearizableRegisters (eight of them, six
// registers, reads and writes through random nodes) against three nodes
// in network namespaces, with partitions as the nemesis: two nodes in turn
// has its route link cut silently for STRATA_PARTITION_LIN_CUT (default
// 6s), long enough for it to lose its lease and the others to drop it and
// take its registers, then healed. Every register must be read and
// written through the majority while the cut lasts and again after the
// heal, and the whole history must be linearizable (porcupine): a node
// cut off never answers from memory for a register the others have
// written since.
func TestClusterPartitionLinearizable(t *testing.T) {
	if testing.Short() {
		t.Skip("partitions of a three-node cluster under the linearizability checker")
	}
	cutFor := 6 * time.Second
	if s := os.Getenv("STRATA_PARTITION_LIN_CUT"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("STRATA_PARTITION_LIN_CUT=%q: %v", s, err)
		}
		cutFor = d
	}
	lab := newNetLab(t, 3)
	c := startClusterIn(t, lab)
	h := &linRun{c: c, names: pickRegisters(t, c, "reg"), start: time.Now()}
	seed := uint64(time.Now().UnixNano())
	t.Logf("client seed %d", seed)
	h.startClients(seed)
	t.Cleanup(func() { h.stopClients() })

	h.waitProgress(t, "all up", h.now(), linPhaseOps)
	// Two of the three in turn, to keep the test near a minute; the
	// scenarios of TestClusterPartition cover the roles.
	for _, victim := range []int{2, 0} {
		name := c.Name(victim)
		lab.Cut(victim)
		cut := time.Now()
		h.waitProgress(t, name+" cut off", h.now(), 1)
		if d := time.Until(cut.Add(cutFor)); d > 0 {
			time.Sleep(d) // the cut's length: the nemesis's schedule
		}
		lab.Heal(victim)
		c.WaitLive(t, 3)
		h.waitProgress(t, name+" healed", h.now(), linPhaseOps)
	}
	ops := h.stopClients()
	end := h.now()

	var wrong []string
	okReads, okWrites, noLease := 0, 0, 0
	for _, op := range ops {
		if op.wrong {
			wrong = append(wrong, op.String())
		}
		if op.outcome == opOK {
			if op.in.Write {
				okWrites++
			} else {
				okReads++
			}
		}
		if op.err != nil && strings.Contains(op.err.Error(), "no_lease") {
			noLease++
		}
	}
	t.Logf("%d operations in %.1fs: ok %d reads, %d writes; %d answered no_lease", len(ops), float64(end)/1e9, okReads, okWrites, noLease)
	if len(wrong) > 0 {
		t.Errorf("%d wrong answers (not 200, and not retryable), e.g.:\n%s", len(wrong), strings.Join(wrong[:min(len(wrong), 10)], "\n"))
	}
	checkLinearizable(t, c, ops, end+1)
}
