package alarms_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/strata-objects/strata/objects"
)

// The alarm benchmark: objects × per-object named alarms, due spread over
// a window starting a little after they are set. Sizes come from the
// environment so the full run is one command:
//
//	STRATA_BENCH_ALARM_OBJECTS=10000 STRATA_BENCH_ALARMS_PER_OBJECT=10 STRATA_BENCH_ALARM_WINDOW=60s \
//	  go test ./alarms -run '^$' -bench BenchmarkAlarms -benchtime 1x -timeout 30m
//
// Defaults are small (1,000 × 10 within 10s) so that `go test -bench .`
// stays short.
func BenchmarkAlarms(b *testing.B) {
	objectsN := envInt(b, "STRATA_BENCH_ALARM_OBJECTS", 1000)
	perObject := envInt(b, "STRATA_BENCH_ALARMS_PER_OBJECT", 10)
	window := envDuration(b, "STRATA_BENCH_ALARM_WINDOW", 10*time.Second)
	if perObject > objects.NamedAlarmsMax {
		b.Fatalf("at most %d alarms per object", objects.NamedAlarmsMax)
	}
	for range b.N {
		runAlarmBench(b, objectsN, perObject, window)
	}
}

type benchLate struct {
	mu   sync.Mutex
	late []time.Duration
	last time.Time
}

var lateness = &benchLate{}

type Bencher struct{}

type SetManyIn struct {
	At []int64 `json:"at"` // due times, Unix ns; alarm i is named "a<i>"
}

func (x *Bencher) SetMany(ctx *objects.Ctx, in SetManyIn) error {
	for i, at := range in.At {
		if err := ctx.Storage().SetAlarmNamed("a"+strconv.Itoa(i), time.Unix(0, at)); err != nil {
			return err
		}
	}
	return nil
}

func (x *Bencher) Alarm(ctx *objects.Ctx, info objects.AlarmInfo) error {
	now := time.Now()
	lateness.mu.Lock()
	lateness.late = append(lateness.late, now.Sub(info.ScheduledAt))
	lateness.last = now
	lateness.mu.Unlock()
	return nil
}

func runAlarmBench(b *testing.B, objectsN, perObject int, window time.Duration) {
	b.StopTimer()
	lateness = &benchLate{}
	n := startNode(b, newDirs(b), true, objects.Define("bencher", func() *Bencher { return &Bencher{} }))
	total := objectsN * perObject
	// Setting must finish before the first is due.
	lead := 5*time.Second + time.Duration(total)*100*time.Microsecond
	first := time.Now().Add(lead)
	b.StartTimer()
	start := time.Now()
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, 1)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range next {
				in := SetManyIn{At: make([]int64, perObject)}
				for i := range in.At {
					k := o*perObject + i
					in.At[i] = first.Add(time.Duration(int64(window) * int64(k) / int64(total))).UnixNano()
				}
				body, _ := json.Marshal(in)
				ref, _ := n.rt.RefByName("bencher", "b"+strconv.Itoa(o))
				if _, err := n.rt.Call(context.Background(), ref, "set-many", body, jsonCodec{}, objects.Cause{}); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for o := range objectsN {
		next <- o
	}
	close(next)
	wg.Wait()
	committed := time.Since(start)
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	for n.svc.Stats().Published < uint64(total) {
		time.Sleep(5 * time.Millisecond)
	}
	scheduled := time.Since(start)
	if time.Now().After(first) {
		b.Logf("warning: scheduling took %s, past the first due time", scheduled)
	}
	deadline := first.Add(window + 2*time.Minute)
	for n.svc.Stats().Ran < uint64(total) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d alarms ran", n.svc.Stats().Ran, total)
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	lateness.mu.Lock()
	late := slices.Clone(lateness.late)
	last := lateness.last
	lateness.mu.Unlock()
	slices.Sort(late)
	pct := func(p float64) time.Duration { return late[min(len(late)-1, int(p*float64(len(late))))] }
	b.ReportMetric(float64(total)/committed.Seconds(), "alarms-committed/s")
	b.ReportMetric(float64(total)/scheduled.Seconds(), "alarms-scheduled/s")
	b.ReportMetric(float64(pct(0.5).Microseconds())/1000, "late-p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "late-p99-ms")
	b.ReportMetric(float64(late[len(late)-1].Microseconds())/1000, "late-max-ms")
	b.ReportMetric(float64(late[0].Microseconds())/1000, "late-min-ms")
	b.ReportMetric(float64(total)/last.Sub(first).Seconds(), "turns/s")
	b.Logf("%d alarms on %d objects due over %s: set in %s, scheduled in %s; %d handler runs (%d extra: at least once); stats %+v",
		total, objectsN, window, committed, scheduled, len(late), len(late)-total, n.svc.Stats())
	n.stop()
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		panic(fmt.Sprintf("%s=%q: want a positive duration", name, v))
	}
	return d
}

// BenchmarkStartRepair: every schedule of objects × per-object alarms is
// missing (set on a node without a scheduler, as if it died after each
// event's ack), and a node starts on the same folders: the time until
// Start's repair has published them all. STRATA_BENCH_ALARM_OBJECTS and
// STRATA_BENCH_ALARMS_PER_OBJECT size it (default 200 × 10).
func BenchmarkStartRepair(b *testing.B) {
	objectsN := envInt(b, "STRATA_BENCH_ALARM_OBJECTS", 200)
	perObject := envInt(b, "STRATA_BENCH_ALARMS_PER_OBJECT", 10)
	class := objects.Define("bencher", func() *Bencher { return &Bencher{} })
	total := objectsN * perObject
	for range b.N {
		b.StopTimer()
		d := newDirs(b)
		n := startNode(b, d, false, class)
		at := time.Now().Add(time.Hour).UnixNano()
		var wg sync.WaitGroup
		next := make(chan int)
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for o := range next {
					in := SetManyIn{At: make([]int64, perObject)}
					for i := range in.At {
						in.At[i] = at
					}
					body, _ := json.Marshal(in)
					ref, _ := n.rt.RefByName("bencher", "r"+strconv.Itoa(o))
					if _, err := n.rt.Call(context.Background(), ref, "set-many", body, jsonCodec{}, objects.Cause{}); err != nil {
						b.Error(err)
					}
				}
			}()
		}
		for o := range objectsN {
			next <- o
		}
		close(next)
		wg.Wait()
		n.stop()
		b.StartTimer()
		start := time.Now()
		n = startNode(b, d, true, class)
		deadline := start.Add(5 * time.Minute)
		for n.svc.Stats().Repaired < uint64(total) {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d schedules repaired", n.svc.Stats().Repaired, total)
			}
			time.Sleep(5 * time.Millisecond)
		}
		took := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(took.Microseconds())/1000, "repair-ms")
		b.ReportMetric(float64(total)/took.Seconds(), "alarms-repaired/s")
		n.stop()
	}
}
