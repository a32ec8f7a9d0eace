package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/log"
)

// TestLeaseBackWaitsForOnLeaseBack: when the lease comes back, the node
// serves again only once OnLeaseBack succeeded (the log's server resumed
// its JetStream, log.Server.Resume): while it fails the node refuses, as
// without the lease. Node b is a membership alone (no router) whose
// connection is closed without a leave, then joined again.
func TestLeaseBackWaitsForOnLeaseBack(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for leases to lapse and come back")
	}
	const hb, ttl = 50 * time.Millisecond, 300 * time.Millisecond
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	n := testnode.Start(t, classes.All(), nil)
	var lost atomic.Int32
	var failBack atomic.Bool
	errNotYet := errors.New("not resumed yet")
	r, err := New(Config{
		Node: "a", Log: n.Log, Codec: testCodec{}, Heartbeat: hb, TTL: ttl, Logger: quiet,
		OnLeaseLost: func() { lost.Add(1) },
		OnLeaseBack: func() error {
			if failBack.Load() {
				return errNotYet
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	joinB := func() *log.Log {
		t.Helper()
		l, err := log.Open(ctx, log.Config{Server: n.Server, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.JoinMembers(ctx, log.MembersConfig{Node: "b", Heartbeat: hb, TTL: ttl}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	b := joinB()
	if err := r.Start(ctx, n.Runtime); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		r.Close(cctx)
	})
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 20s: %s", what)
			}
			time.Sleep(10 * time.Millisecond) // polling the router's state
		}
	}
	waitUntil("a holds its lease with b in the cluster", func() bool { return len(r.Nodes()) == 2 && r.leased() })

	// b falls silent (no leave): a's beats lack a majority's acks.
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil("a loses its lease", func() bool { return !r.leased() && lost.Load() == 1 })

	// b comes back; a's lease with it, but OnLeaseBack fails: a refuses.
	failBack.Store(true)
	b = joinB()
	defer b.Close(context.Background())
	waitUntil("a's membership lease is back", func() bool { return time.Now().Before(r.members.LeaseUntil()) })
	for range 10 {
		if r.leased() {
			t.Fatal("a serves with its lease back while OnLeaseBack fails")
		}
		time.Sleep(hb) // the lease watch tries OnLeaseBack meanwhile
	}
	failBack.Store(false)
	waitUntil("a serves once OnLeaseBack succeeds", r.leased)
	if lost.Load() != 1 {
		t.Fatalf("OnLeaseLost ran %d times, want 1", lost.Load())
	}
}
