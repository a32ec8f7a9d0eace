// Package testnode starts a real single-node Strata (embedded JetStream in a
// temporary folder on a random port, Badger, runtime) for tests of the
// packages above objects.
package testnode

import (
	"context"
	"testing"
	"time"

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
}

// Start starts a node hosting classes; edit adjusts the runtime config. The
// node stops when the test ends.
func Start(t testing.TB, classes []*objects.Class, edit func(*objects.Config)) *Node {
	t.Helper()
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Server: srv}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	n.Log, err = log.Open(context.Background(), log.Config{URL: srv.ClientURL()})
	if err != nil {
		t.Fatal(err)
	}
	var rt *objects.Runtime
	n.Projector, err = projector.Open(projector.Config{Dir: t.TempDir(), OnApplied: func(b []projector.Applied) {
		if rt != nil {
			rt.OnApplied(b)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := objects.Config{Log: n.Log, Projector: n.Projector, Classes: classes}
	if edit != nil {
		edit(&cfg)
	}
	rt, err = objects.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.Runtime = rt
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Runtime.Close(ctx)
		n.Projector.Close(ctx)
		n.Log.Close(ctx)
	})
	return n
}
