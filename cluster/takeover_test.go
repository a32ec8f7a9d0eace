package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/strata-objects/strata/alarms"
	"github.com/strata-objects/strata/cluster"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/projector"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type jsonCodec struct{}

func (jsonCodec) Decode(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

// Ringer sets its alarm on request and reports each Alarm turn on rang.
type Ringer struct{}

var rang = make(chan objects.AlarmInfo, 16)

func (*Ringer) Set(ctx *objects.Ctx, at time.Time) error { return ctx.Storage().SetAlarm(at) }

func (*Ringer) Alarm(ctx *objects.Ctx, info objects.AlarmInfo) error {
	rang <- info
	return nil
}

var ringer = objects.Define("ringer", func() *Ringer { return &Ringer{} })

// member is one in-process cluster node on a shared embedded server.
type member struct {
	log    *log.Log
	proj   *projector.Projector
	rt     *objects.Runtime
	router *cluster.Router
	svc    *alarms.Service // nil: alarms are recorded, never scheduled
}

func startMember(t *testing.T, srv *log.Server, name string, withAlarms bool) *member {
	t.Helper()
	return startMemberWith(t, srv, name, withAlarms, nil)
}

// startMemberWith is startMember with the runtime's configuration changed
// by edit before the runtime is made.
func startMemberWith(t *testing.T, srv *log.Server, name string, withAlarms bool, edit func(*objects.Config, *member)) *member {
	t.Helper()
	ctx := context.Background()
	m := &member{}
	var err error
	if m.log, err = log.Open(ctx, log.Config{Server: srv, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if m.router, err = cluster.New(cluster.Config{Node: name, Log: m.log, Codec: jsonCodec{}, Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	if m.proj, err = projector.Open(projector.Config{Dir: t.TempDir(), Logger: quiet, OnApplied: func(b []projector.Applied) {
		if m.rt != nil {
			m.rt.OnApplied(b)
		}
	}}); err != nil {
		t.Fatal(err)
	}
	oc := objects.Config{Log: m.log, Projector: m.proj, Classes: []*objects.Class{ringer}, Logger: quiet, Claim: m.router.Claim}
	if withAlarms {
		router := m.router
		m.svc, err = alarms.New(alarms.Config{Log: m.log, Projector: m.proj, Logger: quiet, Deliver: m.router.Alarm,
			Owns: func(_ string, id log.ID) bool { return router.Owns(id) }})
		if err != nil {
			t.Fatal(err)
		}
		oc.Alarms = m.svc
		m.router.OnTakeover(m.svc.TakeOver)
	}
	if edit != nil {
		edit(&oc, m)
	}
	if m.rt, err = objects.New(oc); err != nil {
		t.Fatal(err)
	}
	if err := m.router.Start(ctx, m.rt); err != nil {
		t.Fatal(err)
	}
	if m.svc != nil {
		if err := m.svc.Start(ctx, m.rt); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { m.stop(t) })
	return m
}

func (m *member) stop(t *testing.T) {
	if m.rt == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	errs = append(errs, m.router.Close(ctx))
	if m.svc != nil {
		errs = append(errs, m.svc.StopFires(ctx))
	}
	errs = append(errs, m.rt.Close(ctx))
	if m.svc != nil {
		errs = append(errs, m.svc.Close(ctx))
	}
	errs = append(errs, m.proj.Close(ctx), m.log.Close(ctx))
	m.rt = nil
	if err := errors.Join(errs...); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// TestTakeoverRepairsAlarms (issue 15, defect 3): node a records an alarm
// for an object it owns and leaves the cluster for good without having
// published its schedule; node b, which gains the object, schedules it
// (the router tells the alarms service what it gained), and it runs.
func TestTakeoverRepairsAlarms(t *testing.T) {
	srv, err := log.RunEmbedded(log.EmbeddedConfig{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	b := startMember(t, srv, "b", true)
	a := startMember(t, srv, "a", false)
	deadline := time.Now().Add(10 * time.Second)
	for len(a.router.Nodes()) != 2 || len(b.router.Nodes()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("views %v and %v, want both nodes", a.router.Nodes(), b.router.Nodes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var ref objects.Ref
	for i := 0; ; i++ {
		if ref, err = a.rt.RefByName("ringer", fmt.Sprint(t.Name(), i)); err != nil {
			t.Fatal(err)
		}
		if cluster.Owner(ref.ID, []string{"a", "b"}) == "a" {
			break
		}
	}
	due := time.Now().Add(500 * time.Millisecond)
	in, _ := json.Marshal(due)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.router.Call(ctx, ref, "set", in, jsonCodec{}, objects.Cause{}); err != nil {
		t.Fatal(err)
	}
	a.stop(t) // leaves the view: b gains the object
	select {
	case info := <-rang:
		if !info.ScheduledAt.Equal(due) {
			t.Fatalf("rang for %s, want %s", info.ScheduledAt, due)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the alarm never rang; b's alarm stats %+v", b.svc.Stats())
	}
	if s := b.svc.Stats(); s.TakenOver != 1 || s.Repaired != 1 {
		t.Fatalf("b's alarm stats %+v, want 1 taken over and repaired", s)
	}
}

// stuck's Take fails as an overloaded target would while stuckDown is set,
// so a message to it stays pending; Post sends one.
type stuck struct{}

var stuckDown atomic.Bool

func (*stuck) Post(c *objects.Ctx, to string) error { return c.Object("stuck", to).Send("take", 1) }

func (*stuck) Take(c *objects.Ctx, n int) error {
	if stuckDown.Load() {
		return fmt.Errorf("take: %w", objects.ErrOverloaded)
	}
	return objects.PutJSON(c.Storage(), "got", n)
}

func (*stuck) Got(c *objects.Ctx) (int, error) {
	n, _, err := objects.GetJSON[int](c.Storage(), "got")
	return n, err
}

var stuckClass = objects.Define("stuck", func() *stuck { return &stuck{} })

// TestTakeoverDeliversLongPendingMessages (issue 16): node a's sender has a
// message pending for longer than a takeover reads back (its target
// refuses it as overloaded), and a leaves for good. Node b, which gains
// the sender and has never run it, finds it among the senders a marked and
// delivers the message; the mark is then removed. Without the marks b's
// takeover reads only the last 300 ms of log, which holds none of the
// sender's events.
func TestTakeoverDeliversLongPendingMessages(t *testing.T) {
	const lookback = 300 * time.Millisecond
	a, b := startPair(t, func(oc *objects.Config, m *member) {
		oc.Classes = []*objects.Class{stuckClass}
		marks, err := m.log.OpenOutboxMarks(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		oc.OutboxMarks, oc.OutboxMarkAfter = marks, lookback/4
		router := m.router
		if m.svc, err = alarms.New(alarms.Config{Log: m.log, Projector: m.proj, Logger: quiet, Deliver: router.Alarm,
			Owns: func(_ string, id log.ID) bool { return router.Owns(id) }, TakeoverLookback: lookback}); err != nil {
			t.Fatal(err)
		}
		oc.Alarms = m.svc
		router.OnTakeover(m.svc.TakeOver)
	})
	sender, target := stuckOnA(t, a, "sender"), stuckOnA(t, a, "target")
	marks, err := b.log.OpenOutboxMarks(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	marked := func() []log.ID {
		var ids []log.ID
		if err := marks.Marked(context.Background(), func(string, log.ID) bool { return true }, func(_ string, id log.ID, _ uint64) error {
			ids = append(ids, id)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stuckDown.Store(true)
	defer stuckDown.Store(false)
	post(ctx, t, a, sender, target)
	sent := time.Now()
	for ids := marked(); len(ids) != 1 || ids[0] != sender.ID; ids = marked() {
		if time.Since(sent) > 10*time.Second {
			t.Fatalf("marked %v, want the sender %s", ids, sender.ID)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Until(sent.Add(3 * lookback))) // the send is out of the lookback
	a.stop(t)                                      // leaves the view: b gains both objects
	stuckDown.Store(false)
	waitGot(ctx, t, b, target)
	for ids := marked(); len(ids) != 0; ids = marked() {
		if time.Since(sent) > 20*time.Second {
			t.Fatalf("marked %v after the delivery, want none", ids)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stuckOnA returns the first stuck object named prefix0, prefix1, ... that
// node a owns of nodes a and b.
func stuckOnA(t *testing.T, a *member, prefix string) objects.Ref {
	t.Helper()
	ref, err := a.rt.RefByName("stuck", objectOn(t, a, "stuck", "a", []string{"a", "b"}, prefix))
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// post has the stuck object sender send its message to target, through m.
func post(ctx context.Context, t *testing.T, m *member, sender, target objects.Ref) {
	t.Helper()
	in, _ := json.Marshal(target.Name)
	if _, err := m.router.Call(ctx, sender, "post", in, jsonCodec{}, objects.Cause{}); err != nil {
		t.Fatal(err)
	}
}

// waitGot waits until the stuck object target has got its message, asking
// through m, or fails the test when ctx ends.
func waitGot(ctx context.Context, t *testing.T, m *member, target objects.Ref) {
	t.Helper()
	for {
		out, err := m.router.Call(ctx, target, "got", nil, jsonCodec{}, objects.Cause{})
		if err != nil {
			t.Fatal(err)
		}
		if string(out) == "1" {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s got %s: its message was not delivered", target, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeadLettersOfAGoneNode: the dead letter of a sender that only node
// a ran is listed and retried through b once a has left. b's snapshot
// never held the sender; the marks bucket names it. Once the letter is
// retried and delivered, a listing removes the mark.
func TestDeadLettersOfAGoneNode(t *testing.T) {
	a, b := startPair(t, func(oc *objects.Config, m *member) {
		oc.Classes = []*objects.Class{stuckClass}
		oc.MessageBackoff = time.Millisecond
		marks, err := m.log.OpenOutboxMarks(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		oc.OutboxMarks = marks
	})
	sender, target := stuckOnA(t, a, "gone-sender"), stuckOnA(t, a, "gone-target")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stuckDown.Store(true)
	defer stuckDown.Store(false)
	post(ctx, t, a, sender, target)
	for {
		dead, err := a.router.AllDeadLetters(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("a lists %d dead letters, want 1", len(dead))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if local, err := b.rt.DeadSenders(ctx, 100); err != nil || len(local) != 0 {
		t.Fatalf("b's snapshot names %v (%v), want none: b would list the letter without the mark", local, err)
	}
	a.stop(t)
	for len(b.router.Nodes()) != 1 {
		if ctx.Err() != nil {
			t.Fatalf("b's view %v, want b alone", b.router.Nodes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	dead, err := b.router.AllDeadLetters(ctx, 100)
	if err != nil || len(dead) != 1 || dead[0].Sender.ID != sender.ID || !dead[0].Dead {
		t.Fatalf("b lists %+v (%v), want the dead letter of %s", dead, err, sender)
	}
	stuckDown.Store(false)
	if n, err := b.router.RetryAllDead(ctx); err != nil || n != 1 {
		t.Fatalf("retried %d (%v), want 1", n, err)
	}
	waitGot(ctx, t, b, target)
	if dead, err = b.router.AllDeadLetters(ctx, 100); err != nil || len(dead) != 0 {
		t.Fatalf("after the retry: %+v (%v), want no dead letters", dead, err)
	}
	if marked, err := b.rt.MarkedDeadSenders(ctx); err != nil || len(marked) != 0 {
		t.Fatalf("dead marks after the listing: %v (%v), want none", marked, err)
	}
}
