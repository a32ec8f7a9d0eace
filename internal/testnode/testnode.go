// Package testnode starts a real single-node Strata (embedded JetStream in a
// temporary folder on a random port, Badger, runtime) for tests of the
// packages above objects.
package testnode

import (
	"context"
	"testing"
	"time"

	"github.com/strata-objects/strata/alarms"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/projector"
)

// Node is one running node.
type Node struct {
	Server    *log.Server
	Log       *log.Log
	Projector *projector.Projector
	Runtime   *objects.Runtime
	Alarms    *alarms.Service
}

// Start starts a node hosting classes, with alarms (retries from 100 ms);
// edit adjusts the runtime config. The node stops when the test ends.
func Start(t testing.TB, classes []*objects.Class, edit func(*objects.Config)) *Node {
	t.Helper()
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Server: srv}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	n.Log, err = log.Open(context.Background(), log.Config{Server: srv})
	if err != nil {
		t.Fatal(err)
	}
	var rt *objects.Runtime
	n.Projector, err = projector.Open(projector.Config{Dir: t.TempDir(), Log: n.Log, OnApplied: func(b []projector.Applied) {
		if rt != nil {
			rt.OnApplied(b)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	n.Alarms, err = alarms.New(alarms.Config{Log: n.Log, Projector: n.Projector, RetryDelay: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	cfg := objects.Config{Log: n.Log, Projector: n.Projector, Classes: classes, Alarms: n.Alarms}
	if edit != nil {
		edit(&cfg)
	}
	rt, err = objects.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Runtime = rt
	if err := n.Alarms.Start(context.Background(), rt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Alarms.StopFires(ctx)
		n.Runtime.Close(ctx)
		n.Alarms.Close(ctx)
		n.Projector.Close(ctx)
		n.Log.Close(ctx)
	})
	return n
}
