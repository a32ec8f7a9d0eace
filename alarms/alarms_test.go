package alarms_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/strata-objects/strata/alarms"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// quietPeriod is how long a test waits to see that nothing more fires:
// well past the scheduler's resolution (JetStream checks at least every
// 250 ms).
const quietPeriod = 800 * time.Millisecond

func TestFiresOnceNotEarlyWithInfo(t *testing.T) {
	n := startNode(t, newDirs(t), true, wakerClass)
	rec := freshRecorder(t.Name())
	due := time.Now().Add(400 * time.Millisecond)
	n.mustCall(t.Name(), "set", SetIn{At: due})
	fs := waitFires(t, rec, 1, 5*time.Second)
	f := fs[0]
	if f.at.Before(due) {
		t.Fatalf("fired %s early", due.Sub(f.at))
	}
	if f.info.Name != "" || !f.info.ScheduledAt.Equal(due) || f.info.RetryCount != 0 || f.info.IsRetry {
		t.Fatalf("info %+v, want default alarm at %s, first attempt", f.info, due)
	}
	t.Logf("lateness %s", f.at.Sub(due))
	// The schedule is gone once fired, and the acknowledged fire is swept.
	eventually(t, 5*time.Second, "an empty timer stream", func() bool {
		for shard := range n.log.Shards() {
			if k, err := n.log.TimerMessages(context.Background(), shard); err != nil || k != 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(quietPeriod)
	if got := len(rec.snapshot()); got != 1 {
		t.Fatalf("%d fires, want 1", got)
	}
	var left map[string]time.Time
	if err := json.Unmarshal(n.mustCall(t.Name(), "list", nil), &left); err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("alarms left after firing: %v", left)
	}
	// History: the set, then the completion as an alarm turn that deletes it.
	evs := n.events(t.Name())
	last := evs[len(evs)-1].Turns[0]
	if last.Cause.Via != log.ViaAlarm || !hasWrite(last.Writes, log.OpDeleteAlarm, "") {
		t.Fatalf("last turn %+v, want an alarm turn that clears the alarm", last)
	}
}

func hasWrite(ws []log.Write, op log.Op, key string) bool {
	for _, w := range ws {
		if w.Op == op && w.Key == key {
			return true
		}
	}
	return false
}

func TestReplaceBeforeFiringRunsOnlyTheNew(t *testing.T) {
	n := startNode(t, newDirs(t), true, wakerClass)
	rec := freshRecorder(t.Name())
	n.mustCall(t.Name(), "set", SetIn{At: time.Now().Add(300 * time.Millisecond)})
	due := time.Now().Add(900 * time.Millisecond)
	n.mustCall(t.Name(), "set", SetIn{At: due})
	waitFires(t, rec, 1, 5*time.Second)
	time.Sleep(quietPeriod)
	fs := rec.snapshot()
	if len(fs) != 1 || !fs[0].info.ScheduledAt.Equal(due) || fs[0].at.Before(due) {
		t.Fatalf("fires %+v, want one at %s", fs, due)
	}
}

func TestDeleteCancels(t *testing.T) {
	n := startNode(t, newDirs(t), true, wakerClass)
	rec := freshRecorder(t.Name())
	n.mustCall(t.Name(), "set", SetIn{At: time.Now().Add(300 * time.Millisecond)})
	if out := n.mustCall(t.Name(), "delete", SetIn{}); string(out) != "true" {
		t.Fatalf("delete answered %s, want true", out)
	}
	time.Sleep(300*time.Millisecond + quietPeriod)
	if fs := rec.snapshot(); len(fs) != 0 {
		t.Fatalf("deleted alarm fired: %+v", fs)
	}
}

func TestPastTimeFiresAtOnce(t *testing.T) {
	n := startNode(t, newDirs(t), true, wakerClass)
	rec := freshRecorder(t.Name())
	due := time.Now().Add(-time.Hour)
	start := time.Now()
	n.mustCall(t.Name(), "set", SetIn{At: due})
	fs := waitFires(t, rec, 1, 3*time.Second)
	if !fs[0].info.ScheduledAt.Equal(due) {
		t.Fatalf("info %+v, want scheduled at %s", fs[0].info, due)
	}
	t.Logf("past alarm ran %s after it was set", fs[0].at.Sub(start))
}

func TestNamedAlarmsFireIndependently(t *testing.T) {
	n := startNode(t, newDirs(t), true, wakerClass)
	rec := freshRecorder(t.Name())
	now := time.Now()
	want := map[string]time.Time{"": now.Add(500 * time.Millisecond), "a": now.Add(200 * time.Millisecond), "b": now.Add(800 * time.Millisecond), "gone": now.Add(400 * time.Millisecond)}
	for name, at := range want {
		n.mustCall(t.Name(), "set", SetIn{Name: name, At: at})
	}
	n.mustCall(t.Name(), "delete", SetIn{Name: "gone"})
	delete(want, "gone")
	waitFires(t, rec, 3, 5*time.Second)
	time.Sleep(quietPeriod)
	fs := rec.snapshot()
	if len(fs) != 3 {
		t.Fatalf("%d fires, want 3: %+v", len(fs), fs)
	}
	for _, f := range fs {
		at, ok := want[f.info.Name]
		if !ok || !f.info.ScheduledAt.Equal(at) || f.at.Before(at) {
			t.Fatalf("fire %+v does not match %v", f, want)
		}
		delete(want, f.info.Name)
	}
}

func TestErrorThenSuccessRetriesWithGrowingDelay(t *testing.T) {
	n := startNode(t, newDirs(t), true, wakerClass)
	rec := freshRecorder(t.Name())
	rec.setFail(2)
	n.mustCall(t.Name(), "set", SetIn{At: time.Now().Add(100 * time.Millisecond)})
	waitFires(t, rec, 3, 10*time.Second)
	time.Sleep(quietPeriod)
	fs := rec.snapshot()
	if len(fs) != 3 {
		t.Fatalf("%d attempts, want 3", len(fs))
	}
	for i, f := range fs {
		if f.info.RetryCount != i || f.info.IsRetry != (i > 0) {
			t.Fatalf("attempt %d info %+v", i, f.info)
		}
	}
	first, second := fs[1].at.Sub(fs[0].at), fs[2].at.Sub(fs[1].at)
	if first < 100*time.Millisecond || second < 200*time.Millisecond || second <= first {
		t.Fatalf("retry delays %s then %s, want growing from 100ms", first, second)
	}
	if out := n.mustCall(t.Name(), "runs", nil); string(out) != "1" {
		t.Fatalf("runs = %s, want 1", out)
	}
	completions := 0
	for _, ev := range n.events(t.Name()) {
		for _, tr := range ev.Turns {
			if tr.Cause.Via == log.ViaAlarm {
				completions++
				if tr.Cause.Method != "alarm (retry 2)" {
					t.Fatalf("completion cause %q, want the retry count", tr.Cause.Method)
				}
			}
		}
	}
	if completions != 1 {
		t.Fatalf("%d alarm turns in history, want exactly 1", completions)
	}
}

func TestExhaustedRetriesDeadLetterThenRetry(t *testing.T) {
	class := objects.Define("waker", func() *Waker { return &Waker{} }).WithAlarmRetries(2)
	n := startNode(t, newDirs(t), true, class)
	rec := freshRecorder(t.Name())
	rec.setFail(-1)
	due := time.Now().Add(50 * time.Millisecond)
	n.mustCall(t.Name(), "set", SetIn{Name: "job", At: due})
	waitFires(t, rec, 3, 10*time.Second)
	var dead []log.DeadFire
	eventually(t, 5*time.Second, "a dead letter", func() bool {
		dead = dead[:0]
		if err := n.svc.Dead(context.Background(), func(d log.DeadFire) error { dead = append(dead, d); return nil }); err != nil {
			t.Fatal(err)
		}
		return len(dead) == 1
	})
	if d := dead[0]; d.Name != "job" || d.At != due.UnixNano() || !strings.Contains(d.Reason, "failed 3 times") {
		t.Fatalf("dead letter %+v", d)
	}
	if got := len(rec.snapshot()); got != 3 {
		t.Fatalf("%d attempts, want 3 (1 + 2 retries)", got)
	}
	// The object gave the alarm up (an event), so no activation re-arms it.
	eventually(t, 5*time.Second, "the alarm abandoned", func() bool {
		return string(n.mustCall(t.Name(), "list", nil)) == "{}"
	})
	rec.setFail(0)
	if k, err := n.svc.RetryDead(context.Background()); err != nil || k != 1 {
		t.Fatalf("RetryDead = %d, %v", k, err)
	}
	fs := waitFires(t, rec, 4, 5*time.Second)
	if f := fs[3]; f.err || f.info.Name != "job" || f.info.RetryCount != 0 || !f.info.ScheduledAt.Equal(due) {
		t.Fatalf("replayed fire %+v", f)
	}
	eventually(t, 5*time.Second, "the alarm cleared", func() bool {
		return string(n.mustCall(t.Name(), "runs", nil)) == "1"
	})
	dead = dead[:0]
	if err := n.svc.Dead(context.Background(), func(d log.DeadFire) error { dead = append(dead, d); return nil }); err != nil || len(dead) != 0 {
		t.Fatalf("dead letters after retry: %v, %v", dead, err)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	n := startNode(t, newDirs(t), true, wakerClass)
	name := t.Name()
	n.mustCall(name, "set", SetIn{Name: "first", At: time.Now().Add(time.Hour)})
	before := len(n.events(name))
	cases := []SetIn{
		{Name: strings.Repeat("x", objects.AlarmNameBytesMax+1), At: time.Now().Add(time.Hour)},
		{Name: "zero"},
	}
	for _, in := range cases {
		if _, err := n.call(name, "set", in); !errors.Is(err, objects.ErrBadInput) {
			t.Fatalf("set %q at %s: %v, want ErrBadInput", in.Name, in.At, err)
		}
	}
	for i := 1; i < objects.NamedAlarmsMax; i++ {
		n.mustCall(name, "set", SetIn{Name: "n" + string(rune('A'+i%26)) + string(rune('a'+i/26)), At: time.Now().Add(time.Hour)})
	}
	after := len(n.events(name))
	if after != before+objects.NamedAlarmsMax-1 {
		t.Fatalf("%d events after %d good sets, had %d", after, objects.NamedAlarmsMax-1, before)
	}
	if _, err := n.call(name, "set", SetIn{Name: "one-too-many", At: time.Now().Add(time.Hour)}); !errors.Is(err, objects.ErrBadInput) {
		t.Fatalf("65th named alarm: %v, want ErrBadInput", err)
	}
	// Replacing an existing one and the default alarm are still allowed.
	n.mustCall(name, "set", SetIn{Name: "first", At: time.Now().Add(2 * time.Hour)})
	n.mustCall(name, "set", SetIn{At: time.Now().Add(2 * time.Hour)})
	if got := len(n.events(name)); got != after+2 {
		t.Fatalf("%d events, want %d: a refused set wrote", got, after+2)
	}
}

func TestMissingSchedulesRepublishedOnStart(t *testing.T) {
	d := newDirs(t)
	// A node without the scheduler: the events commit, no schedule is
	// published, as if the node died between the two writes.
	n := startNode(t, d, false, wakerClass)
	rec := freshRecorder(t.Name())
	due := time.Now().Add(300 * time.Millisecond)
	n.mustCall(t.Name(), "set", SetIn{Name: "x", At: due})
	n.mustCall(t.Name(), "set", SetIn{Name: "y", At: due.Add(-time.Minute)})
	n.stop()
	if len(rec.snapshot()) != 0 {
		t.Fatal("fired without a scheduler")
	}
	startNode(t, d, true, wakerClass)
	fs := waitFires(t, rec, 2, 5*time.Second)
	if fs[0].info.Name == fs[1].info.Name {
		t.Fatalf("fires %+v, want x and y", fs)
	}
}

func TestMissingSchedulesRepublishedOnActivation(t *testing.T) {
	d := newDirs(t)
	n := startNode(t, d, false, wakerClass)
	rec := freshRecorder(t.Name())
	n.mustCall(t.Name(), "set", SetIn{At: time.Now().Add(200 * time.Millisecond)})
	n.stop()
	// Remove the snapshot's index by starting over on an empty snapshot:
	// Start finds nothing, the activation's catch-up finds the alarm.
	n2 := startNode(t, dirs{nats: d.nats, snap: t.TempDir()}, true, wakerClass)
	time.Sleep(quietPeriod)
	if len(rec.snapshot()) != 0 {
		t.Fatal("fired before the object was activated")
	}
	n2.mustCall(t.Name(), "runs", nil)
	waitFires(t, rec, 1, 5*time.Second)
}

// TestFencedTurnSchedulesNothing: an alarm set by a turn whose event was
// refused (another node wrote the object first) is never scheduled.
func TestFencedTurnSchedulesNothing(t *testing.T) {
	a := startNode(t, newDirs(t), true, wakerClass)
	b := startNodeOn(t, a.srv, t.TempDir(), true, wakerClass)
	rec := freshRecorder(t.Name())
	a.mustCall(t.Name(), "runs", nil) // a holds an activation
	bAt := time.Now().Add(time.Hour)
	b.mustCall(t.Name(), "set", SetIn{Name: "b", At: bAt})
	xAt := time.Now().Add(200 * time.Millisecond)
	if _, err := a.call(t.Name(), "set", SetIn{Name: "x", At: xAt}); !errors.Is(err, objects.ErrFenced) {
		t.Fatalf("stale node's write: %v, want ErrFenced", err)
	}
	time.Sleep(200*time.Millisecond + quietPeriod)
	if fs := rec.snapshot(); len(fs) != 0 {
		t.Fatalf("an uncommitted alarm fired: %+v", fs)
	}
	id := objects.IDFromName("waker", t.Name())
	fires := []log.Fire{{Class: "waker", ID: id, Name: "x", At: xAt.UnixNano()}, {Class: "waker", ID: id, Name: "b", At: bAt.UnixNano()}}
	states, err := a.log.Schedules(context.Background(), fires)
	if err != nil || states[0] != log.Unscheduled || states[1] != log.Scheduled {
		t.Fatalf("schedules of (x, b) = %v, %v; want x unscheduled, b scheduled", states, err)
	}
}

// TestReplacedAlarmRepairedAfterCrash (issue 15, defect 2): an alarm set
// to t1 (scheduled), then replaced by t2 whose event is acknowledged but
// whose schedule is never published (the node dies between the two), is
// scheduled at t2 on restart: t1's schedule on the same subject does not
// count as t2's.
func TestReplacedAlarmRepairedAfterCrash(t *testing.T) {
	d := newDirs(t)
	n := startNode(t, d, true, wakerClass)
	rec := freshRecorder(t.Name())
	t1 := time.Now().Add(time.Hour)
	n.mustCall(t.Name(), "set", SetIn{At: t1})
	id := objects.IDFromName("waker", t.Name())
	eventually(t, 10*time.Second, "t1's schedule", func() bool {
		st, err := n.log.Schedules(context.Background(), []log.Fire{{Class: "waker", ID: id, At: t1.UnixNano()}})
		return err == nil && st[0] == log.Scheduled
	})
	n.stop()
	// The node without a scheduler stands for the one that died between
	// the event's ack and the schedule's publish.
	n = startNode(t, d, false, wakerClass)
	t2 := time.Now().Add(300 * time.Millisecond)
	n.mustCall(t.Name(), "set", SetIn{At: t2})
	n.stop()
	n = startNode(t, d, true, wakerClass)
	fs := waitFires(t, rec, 1, 10*time.Second)
	if got := fs[0].info.ScheduledAt; !got.Equal(t2) {
		t.Fatalf("fired for %s, want t2 %s", got, t2)
	}
	if s := n.svc.Stats(); s.Repaired != 1 {
		t.Fatalf("stats %+v, want 1 repaired", s)
	}
}

// TestPlatformFailuresSpendNoRetries (issue 15, defect 5): fires that the
// platform fails to deliver (log unavailable, object fenced or moving,
// timeouts: a failover) are tried again without spending the class's
// retries, which only the handler's own failures spend. The class allows
// one retry; the platform fails six times, then the handler once.
func TestPlatformFailuresSpendNoRetries(t *testing.T) {
	name := t.Name()
	class := objects.Define("waker", func() *Waker { return &Waker{} }).WithAlarmRetries(1)
	platform := []error{
		fmt.Errorf("owner gone: %w", objects.ErrUnavailable),
		fmt.Errorf("moving: %w", objects.ErrMoved),
		fmt.Errorf("stale activation: %w", objects.ErrFenced),
		fmt.Errorf("busy: %w", objects.ErrOverloaded),
		context.DeadlineExceeded,
		fmt.Errorf("forward: %w", objects.ErrUnavailable),
	}
	var mu sync.Mutex
	srv := startServer(t)
	n := startNodeWith(t, srv, t.TempDir(), true, func(n *node, c *alarms.Config) {
		c.RetryDelayMax = 200 * time.Millisecond
		c.Deliver = func(ctx context.Context, ref objects.Ref, info objects.AlarmInfo) error {
			mu.Lock()
			if len(platform) > 0 {
				err := platform[0]
				platform = platform[1:]
				mu.Unlock()
				return err
			}
			mu.Unlock()
			return n.rt.Alarm(ctx, ref, info)
		}
	}, class)
	rec := freshRecorder(name)
	rec.setFail(1)
	n.mustCall(name, "set", SetIn{At: time.Now().Add(100 * time.Millisecond)})
	fs := waitFires(t, rec, 2, 20*time.Second)
	if !fs[0].err || fs[0].info.RetryCount != 0 || fs[1].err || fs[1].info.RetryCount != 1 {
		t.Fatalf("handler runs %+v: want a failure at retry 0, a success at retry 1", fs)
	}
	eventually(t, 10*time.Second, "the alarm to complete", func() bool { return n.svc.Stats().Ran == 1 })
	if s := n.svc.Stats(); s.Dead != 0 || s.Deferred != 6 || s.Retried != 1 {
		t.Fatalf("stats %+v: want 6 deferred, 1 retried, none dead", s)
	}
}

// TestSweepRepublishesLostSchedule (issue 15, defect 3): a pending alarm
// whose schedule is gone from the timer stream (its publish lost) while
// its object is not active is scheduled again by the periodic sweep,
// without a restart or an activation.
func TestSweepRepublishesLostSchedule(t *testing.T) {
	srv := startServer(t)
	n := startNodeWith(t, srv, t.TempDir(), true, func(_ *node, c *alarms.Config) {
		c.SweepInterval, c.SweepPage = 50*time.Millisecond, 2
	}, wakerClass)
	name := t.Name()
	id := objects.IDFromName("waker", name)
	at := time.Now().Add(time.Hour)
	// Other objects' alarms, so the lost one is found a page at a time.
	for i := range 5 {
		n.mustCall(fmt.Sprint(name, i), "set", SetIn{At: at})
	}
	n.mustCall(name, "set", SetIn{Name: "lost", At: at})
	fire := log.Fire{Class: "waker", ID: id, Name: "lost", At: at.UnixNano()}
	scheduled := func() bool {
		st, err := n.log.Schedules(context.Background(), []log.Fire{fire})
		return err == nil && st[0] == log.Scheduled
	}
	eventually(t, 10*time.Second, "the schedule", scheduled)
	n.rt.ReleaseIf(func(string, objects.ID) bool { return true })
	eventually(t, 10*time.Second, "the activation to end", func() bool { return !n.rt.Active("waker", id) })
	repaired := n.svc.Stats().Repaired
	if err := n.log.Unschedule(context.Background(), "waker", id, "lost"); err != nil {
		t.Fatal(err)
	}
	// The sweep may put it back before a check here could see it gone:
	// the repair count tells that it was missing and was published again.
	eventually(t, 10*time.Second, "the sweep to repair the lost schedule", func() bool { return n.svc.Stats().Repaired > repaired })
	eventually(t, 10*time.Second, "the sweep to publish the schedule again", scheduled)
	if s := n.svc.Stats(); s.Repaired != repaired+1 || s.Swept == 0 {
		t.Fatalf("stats %+v, want one more repaired (was %d)", s, repaired)
	}
}

// TestTakeOverRepairsDeadNodesAlarms (issue 15, defect 3): node a records
// an alarm and dies for good before publishing its schedule; node b,
// which takes the object over and never ran it (its snapshot has no such
// alarm, so neither its start nor its sweep can find it), finds the alarm
// in the last moments of the log and schedules it.
func TestTakeOverRepairsDeadNodesAlarms(t *testing.T) {
	srv := startServer(t)
	b := startNodeWith(t, srv, t.TempDir(), true, func(_ *node, c *alarms.Config) {
		c.SweepInterval = 50 * time.Millisecond
	}, wakerClass)
	a := startNodeOn(t, srv, t.TempDir(), false, wakerClass)
	name := t.Name()
	rec := freshRecorder(name)
	id := objects.IDFromName("waker", name)
	other := objects.IDFromName("waker", name+" (not gained)")
	due := time.Now().Add(time.Second)
	a.mustCall(name, "set", SetIn{Name: "x", At: due.Add(time.Hour)}) // replaced below
	a.mustCall(name, "set", SetIn{Name: "x", At: due})
	a.mustCall(name, "set", SetIn{Name: "gone", At: due})
	a.mustCall(name, "delete", SetIn{Name: "gone"})
	a.mustCall(name+" (not gained)", "set", SetIn{At: due})
	a.stop()
	time.Sleep(quietPeriod) // b's sweeps run meanwhile
	if fs := rec.snapshot(); len(fs) != 0 || b.svc.Stats().Repaired != 0 {
		t.Fatalf("fired before the takeover: %+v, stats %+v", fs, b.svc.Stats())
	}
	b.svc.TakeOver(func(_ string, gid log.ID) bool { return gid == id })
	fs := waitFires(t, rec, 1, 10*time.Second)
	if fs[0].info.Name != "x" || !fs[0].info.ScheduledAt.Equal(due) {
		t.Fatalf("fired %+v, want x at %s", fs[0].info, due)
	}
	if s := b.svc.Stats(); s.TakenOver != 1 || s.Repaired != 1 {
		t.Fatalf("stats %+v, want 1 alarm taken over and repaired", s)
	}
	st, err := b.log.Schedules(context.Background(), []log.Fire{{Class: "waker", ID: other, At: due.UnixNano()}})
	if err != nil || st[0] != log.Unscheduled {
		t.Fatalf("the object not gained was scheduled: %v, %v", st, err)
	}
}

// TestSweepKeepsNewerSchedule: a node whose snapshot is behind the log
// (another node replaced the alarm since) must not put the old time back
// over the new schedule when it sweeps: the timer stream holding another
// time is checked against the object's last event in the log.
func TestSweepKeepsNewerSchedule(t *testing.T) {
	srv := startServer(t)
	b := startNodeWith(t, srv, t.TempDir(), true, func(_ *node, c *alarms.Config) {
		c.SweepInterval = 20 * time.Millisecond
	}, wakerClass)
	a := startNodeOn(t, srv, t.TempDir(), true, wakerClass)
	name := t.Name()
	id := objects.IDFromName("waker", name)
	t1, t2 := time.Now().Add(time.Hour), time.Now().Add(2*time.Hour)
	scheduled := func(at time.Time) bool {
		st, err := b.log.Schedules(context.Background(), []log.Fire{{Class: "waker", ID: id, At: at.UnixNano()}})
		return err == nil && st[0] == log.Scheduled
	}
	b.mustCall(name, "set", SetIn{At: t1})
	eventually(t, 10*time.Second, "t1's schedule", func() bool { return scheduled(t1) })
	b.rt.ReleaseIf(func(string, objects.ID) bool { return true })
	eventually(t, 10*time.Second, "b's activation to end", func() bool { return !b.rt.Active("waker", id) })
	a.mustCall(name, "set", SetIn{At: t2}) // b's snapshot still says t1
	eventually(t, 10*time.Second, "t2's schedule", func() bool { return scheduled(t2) })
	swept := b.svc.Stats().Swept
	eventually(t, 10*time.Second, "b's sweep to pass over the alarm twice", func() bool {
		return b.svc.Stats().Swept >= swept+2
	})
	if !scheduled(t2) || b.svc.Stats().Repaired != 0 {
		t.Fatalf("b's sweep replaced t2's schedule with its stale t1 (t1 scheduled: %v); stats %+v", scheduled(t1), b.svc.Stats())
	}
}
