package alarms_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

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
	b.mustCall(t.Name(), "set", SetIn{Name: "b", At: time.Now().Add(time.Hour)})
	if _, err := a.call(t.Name(), "set", SetIn{Name: "x", At: time.Now().Add(200 * time.Millisecond)}); !errors.Is(err, objects.ErrFenced) {
		t.Fatalf("stale node's write: %v, want ErrFenced", err)
	}
	time.Sleep(200*time.Millisecond + quietPeriod)
	if fs := rec.snapshot(); len(fs) != 0 {
		t.Fatalf("an uncommitted alarm fired: %+v", fs)
	}
	id := objects.IDFromName("waker", t.Name())
	for name, want := range map[string]bool{"x": false, "b": true} {
		ok, err := a.log.Scheduled(context.Background(), "waker", id, name)
		if err != nil || ok != want {
			t.Fatalf("alarm %q scheduled = %v, %v; want %v", name, ok, err, want)
		}
	}
}
