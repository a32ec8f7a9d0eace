package objects

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/projector"
)

// ckptWorkload runs random turns (puts, deletes, delete-alls, several
// writes a turn) on scratch object name and returns the storage the model
// expects after each version.
func ckptWorkload(t *testing.T, h *harness, name string, seed uint64, turns int) map[uint64]map[string]string {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	model := map[string]string{}
	states := map[uint64]map[string]string{0: {}}
	for i := 0; i < turns; i++ {
		type w struct {
			del, all bool
			k, v     string
		}
		var ws []w
		for n := 1 + rng.IntN(3); n > 0; n-- {
			switch r := rng.IntN(20); {
			case r == 0:
				ws = append(ws, w{all: true})
			case r < 6:
				ws = append(ws, w{del: true, k: fmt.Sprint("k", rng.IntN(12))})
			default:
				ws = append(ws, w{k: fmt.Sprint("k", rng.IntN(12)), v: fmt.Sprint(seed, "-", i)})
			}
		}
		h.must(name, func(c *Ctx, _ *scratch) (any, error) {
			s := c.Storage()
			for _, x := range ws {
				var err error
				switch {
				case x.all:
					err = s.DeleteAll()
				case x.del:
					_, err = s.Delete(x.k)
				default:
					err = s.Put(x.k, []byte(x.v))
				}
				if err != nil {
					return nil, err
				}
			}
			return nil, nil
		})
		for _, x := range ws {
			switch {
			case x.all:
				clear(model)
			case x.del:
				delete(model, x.k)
			default:
				model[x.k] = x.v
			}
		}
		states[h.lastVersion("scratch", name)] = maps.Clone(model)
	}
	return states
}

func strState(m map[string][]byte) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out
}

// storageOf lists an object's storage through a turn.
func storageOf(t *testing.T, h *harness, name string) map[string]string {
	t.Helper()
	out := h.must(name, func(c *Ctx, _ *scratch) (any, error) {
		kvs, err := c.Storage().List(ListOptions{})
		m := map[string]string{}
		for _, kv := range kvs {
			m[kv.Key] = string(kv.Value)
		}
		return m, err
	})
	return out.(map[string]string)
}

// TestCheckpointProperty: for random workloads with a checkpoint every 7
// events, every checkpoint equals the model at its version and carries
// the log's chain hash there; the state from checkpoint plus remaining
// events equals a full replay and the model at every version; and an
// activation on a node with an empty snapshot reads at most 7 events.
func TestCheckpointProperty(t *testing.T) {
	const every = 7
	srv := startServer(t)
	withCkpt := func(c *Config) { c.Checkpoints = CheckpointConfig{Every: every} }
	h := newHarnessOn(t, srv, withCkpt)
	ctx := context.Background()
	for _, seed := range []uint64{1, 2, 3} {
		name := fmt.Sprint("p", seed)
		states := ckptWorkload(t, h, name, seed, 40+int(seed)*13)
		if err := h.rt.FlushCheckpoints(ctx); err != nil {
			t.Fatal(err)
		}
		last := h.lastVersion("scratch", name)
		if last%every == 0 {
			h.must(name, put("tail", "1")) // leave events after the newest checkpoint
			last++
			states[last] = maps.Clone(states[last-1])
			states[last]["tail"] = "1"
		}
		ref := h.ref("scratch", name)
		hashes := map[uint64]log.Hash{}
		h.log.Read(ctx, "scratch", ref.ID, 1, func(r log.Record) error { hashes[r.Event.Version] = r.Hash(); return nil })

		n := 0
		err := h.log.Checkpoints(ctx, "scratch", ref.ID, func(info log.CheckpointInfo) error {
			n++
			ck, err := h.log.LoadCheckpoint(ctx, info)
			if err != nil {
				return err
			}
			if info.Version%every != 0 || !maps.Equal(strState(ck.Keys), states[info.Version]) || ck.Hash != hashes[info.Version] {
				return fmt.Errorf("checkpoint v%d: %v hash %s, want %v hash %s", info.Version, strState(ck.Keys), ck.Hash, states[info.Version], hashes[info.Version])
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != int(last/every) {
			t.Fatalf("%s: %d checkpoints for %d events, want %d", name, n, last, last/every)
		}
		rng := rand.New(rand.NewPCG(seed, 9))
		for v := uint64(1); v <= last; v++ {
			past, err := h.rt.StateAt(ctx, ref, history.At{Version: v})
			if err != nil {
				t.Fatal(err)
			}
			full, err := history.Replay(ctx, h.log, "scratch", ref.ID, nil, func(ev *log.Event) bool { return ev.Version > v }, nil)
			if err != nil {
				t.Fatal(err)
			}
			if past.Version != v || !maps.Equal(strState(past.Keys), states[v]) || !maps.Equal(strState(full.State), states[v]) {
				t.Fatalf("%s v%d: from checkpoint %v, full replay %v, model %v", name, v, strState(past.Keys), strState(full.State), states[v])
			}
			if rng.IntN(4) == 0 { // and by time, at random versions
				pt, err := h.rt.StateAt(ctx, ref, history.At{Time: past.Time})
				if err != nil || pt.Version != v || !maps.Equal(strState(pt.Keys), states[v]) {
					t.Fatalf("%s at %s (v%d): v%d %v %v", name, past.Time, v, pt.Version, strState(pt.Keys), err)
				}
			}
		}
		// History from a version (replayed from the checkpoint before it)
		// shows the same entries, with the same diffs, as from the start.
		var all []history.Entry
		if err := h.rt.History(ctx, ref, history.Range{}, func(e history.Entry) error { all = append(all, e); return nil }); err != nil || len(all) != int(last) {
			t.Fatalf("history: %d entries, %v", len(all), err)
		}
		for i := 0; i < 10; i++ {
			from := 1 + rng.Uint64N(last)
			var got []history.Entry
			if err := h.rt.History(ctx, ref, history.Range{From: from, Limit: 3}, func(e history.Entry) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if want := all[from-1 : min(from-1+3, last)]; !reflect.DeepEqual(got, want) {
				t.Fatalf("history from v%d: %+v, want %+v", from, got, want)
			}
		}
		rep, err := h.rt.Verify(ctx, ref)
		if err != nil || !rep.OK || rep.Checkpoints != n || rep.From != 1 {
			t.Fatalf("verify: %+v %v", rep, err)
		}

		// A node with an empty snapshot: activation installs the newest
		// checkpoint and reads only the events after it.
		for _, c := range []struct {
			every int
			reads uint64
		}{{every, last % every}, {-1, last}} {
			h2 := newHarnessOn(t, srv, func(cfg *Config) { cfg.Checkpoints = CheckpointConfig{Every: c.every} })
			before := h2.log.Stats().Read
			if got := storageOf(t, h2, name); !maps.Equal(got, states[last]) {
				t.Fatalf("%s on a new node (every %d): %v, want %v", name, c.every, got, states[last])
			}
			if reads := h2.log.Stats().Read - before; reads != c.reads || c.every > 0 && reads > every {
				t.Fatalf("%s: activation with checkpoints every %d read %d events, want %d", name, c.every, reads, c.reads)
			}
			h2.close()
		}
	}
	if s := h.rt.CheckpointStats(); s.Failed != 0 || s.Skipped != 0 || s.Written == 0 {
		t.Fatalf("checkpointer stats %+v", s)
	}
}

// TestRetention: a class that retains from its checkpoints drops older
// events; history starts after the checkpoint, audit verifies from its
// hash, time travel before it is a clear ErrBadRange, and a new node
// activates the object from the checkpoint. Other classes keep everything.
func TestRetention(t *testing.T) {
	const every = 5
	srv := startServer(t)
	cfg := func(c *Config) {
		c.Checkpoints = CheckpointConfig{Every: every, Retain: map[string]bool{"scratch": true}}
	}
	h := newHarnessWith(t, srv, log.Config{AllowRetention: true}, cfg)
	ctx := context.Background()
	states := ckptWorkload(t, h, "r", 7, 23)
	for i := 0; i < 12; i++ { // a class that keeps everything
		if _, err := h.add(ctx, "keep", 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.rt.FlushCheckpoints(ctx); err != nil {
		t.Fatal(err)
	}
	ref := h.ref("scratch", "r")
	last := h.lastVersion("scratch", "r")
	kept := last / every * every // the newest checkpoint's version
	var versions []uint64
	h.log.Read(ctx, "scratch", ref.ID, 1, func(r log.Record) error { versions = append(versions, r.Event.Version); return nil })
	if len(versions) == 0 || versions[0] != kept || versions[len(versions)-1] != last {
		t.Fatalf("retained events %v, want %d..%d", versions, kept, last)
	}
	var tally []uint64
	h.log.Read(ctx, "tally", IDFromName("tally", "keep"), 1, func(r log.Record) error { tally = append(tally, r.Event.Version); return nil })
	if len(tally) != 12 || tally[0] != 1 {
		t.Fatalf("a class without retention lost events: %v", tally)
	}

	var shown []uint64
	err := h.rt.History(ctx, ref, history.Range{}, func(e history.Entry) error { shown = append(shown, e.Version); return nil })
	if err != nil || len(shown) != int(last-kept) || len(shown) > 0 && shown[0] != kept+1 {
		t.Fatalf("history %v %v, want %d..%d", shown, err, kept+1, last)
	}
	for v := kept; v <= last; v++ {
		st, err := h.rt.StateAt(ctx, ref, history.At{Version: v})
		if err != nil || !maps.Equal(strState(st.Keys), states[v]) {
			t.Fatalf("state at retained v%d: %v %v, want %v", v, strState(st.Keys), err, states[v])
		}
	}
	// An older checkpoint still answers for its own version; versions
	// between checkpoints before the retained point are gone.
	if st, err := h.rt.StateAt(ctx, ref, history.At{Version: every}); err != nil || !maps.Equal(strState(st.Keys), states[every]) {
		t.Fatalf("state at the first checkpoint: %v %v", strState(st.Keys), err)
	}
	for _, v := range []uint64{1, every + 2, kept - 1} {
		_, err := h.rt.StateAt(ctx, ref, history.At{Version: v})
		if !errors.Is(err, ErrBadRange) || !strings.Contains(err.Error(), "retained history") {
			t.Fatalf("state at dropped v%d: %v, want ErrBadRange about the retained history", v, err)
		}
	}
	if _, err := h.rt.Restore(ctx, ref, history.At{Version: 2}, Cause{}); !errors.Is(err, ErrBadRange) {
		t.Fatalf("restore to a dropped version: %v", err)
	}
	rep, err := h.rt.Verify(ctx, ref)
	if err != nil || !rep.OK || rep.From != kept || rep.Events != last-kept+1 {
		t.Fatalf("audit of a retained log: %+v %v, want from %d", rep, err, kept)
	}
	// A rebuild of a fresh snapshot starts the object from its checkpoint.
	p, err := projector.Open(projector.Config{Dir: t.TempDir(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)
	if _, err := Rebuild(ctx, h.log, p, nil, nil); err != nil {
		t.Fatal(err)
	}
	rebuilt := map[string]string{}
	p.List("scratch", ref.ID, projector.ListOptions{}, func(k string, v []byte) bool { rebuilt[k] = string(v); return true })
	if meta, _ := p.Meta("scratch", ref.ID); meta.Version != last || !maps.Equal(rebuilt, states[last]) {
		t.Fatalf("rebuilt v%d %v, want v%d %v", meta.Version, rebuilt, last, states[last])
	}
	h2 := newHarnessWith(t, srv, log.Config{AllowRetention: true}, cfg)
	if got := storageOf(t, h2, "r"); !maps.Equal(got, states[last]) {
		t.Fatalf("a new node activates %v, want %v", got, states[last])
	}
	if _, err := h2.rt.Restore(ctx, ref, history.At{Version: kept + 1}, Cause{}); err != nil {
		t.Fatalf("restore within the retained history: %v", err)
	}
	if got := storageOf(t, h2, "r"); !maps.Equal(got, states[kept+1]) {
		t.Fatalf("after restore to v%d: %v, want %v", kept+1, got, states[kept+1])
	}
}

// TestActivationRacesRetention: a node activates an object while another
// node's checkpointer writes a newer checkpoint and drops the events the
// activation was about to read. The activation starts again from the newer
// checkpoint and ends at the object's newest state; nothing fails.
func TestActivationRacesRetention(t *testing.T) {
	const every = 5
	srv := startServer(t)
	cfg := CheckpointConfig{Every: every, Retain: map[string]bool{"scratch": true}}
	h := newHarnessWith(t, srv, log.Config{AllowRetention: true}, func(c *Config) { c.Checkpoints = cfg })
	ctx := context.Background()
	ckptWorkload(t, h, "race", 11, 23) // newest checkpoint: v20
	if err := h.rt.FlushCheckpoints(ctx); err != nil {
		t.Fatal(err)
	}
	ref := h.ref("scratch", "race")
	var raced atomic.Int32
	h2 := newHarnessWith(t, srv, log.Config{AllowRetention: true}, func(c *Config) {
		c.Checkpoints = cfg
		c.Hooks.Loading = func(class string, id ID) {
			if class != "scratch" || id != ref.ID || raced.Add(1) != 1 {
				return
			}
			// h2 starts from the v20 checkpoint; meanwhile the object
			// reaches v33 on h, which checkpoints v25 and v30 and drops
			// every event before v30.
			for i := 0; i < 10; i++ {
				h.must("race", put(fmt.Sprint("late", i), fmt.Sprint(i)))
			}
			if err := h.rt.FlushCheckpoints(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	got := storageOf(t, h2, "race")
	if raced.Load() < 2 {
		t.Fatalf("the activation loaded %d times: the race did not happen or was not retried", raced.Load())
	}
	if want := storageOf(t, h, "race"); !maps.Equal(got, want) {
		t.Fatalf("activation after the race: %v, want %v", got, want)
	}
	if first := h.firstVersion("scratch", "race"); first != 30 {
		t.Fatalf("retained events start at v%d, want v30: the purge the test races did not happen", first)
	}
}

// firstVersion is the version of the object's oldest event in the log
// (after a retaining class dropped older ones), 0 if it has none.
func (h *harness) firstVersion(class, name string) uint64 {
	var first uint64
	h.log.Read(context.Background(), class, IDFromName(class, name), 1, func(r log.Record) error {
		first = r.Event.Version
		return errStopRead
	})
	return first
}

// TestRetentionNeedsAPurgeableLog: retention is chosen when the log is
// created; an append-only log refuses it and refuses drops.
func TestRetentionNeedsAPurgeableLog(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.log.DropBefore(ctx, "scratch", IDFromName("scratch", "x"), 10); !errors.Is(err, log.ErrAppendOnly) {
		t.Fatalf("drop on an append-only log: %v", err)
	}
	_, err := log.Open(ctx, log.Config{Server: h.srv, Logger: quiet, AllowRetention: true})
	if !errors.Is(err, log.ErrAppendOnly) {
		t.Fatalf("retention on an append-only log: %v", err)
	}
}

// TestCheckpointQueueNeverBlocks: the ack path hands checkpoints over
// without waiting; when the writer is behind, they are skipped and
// counted, never queued without bound.
func TestCheckpointQueueNeverBlocks(t *testing.T) {
	c := &checkpointer{cfg: CheckpointConfig{Every: 2}, queue: make(chan ckptJob, 1)} // no writer running
	for v := uint64(1); v <= 8; v++ {
		c.committed("scratch", ID{}, v)
	}
	if len(c.queue) != 1 || c.stats.skipped.Load() != 3 {
		t.Fatalf("queued %d, skipped %d; want 1 queued (v2) and 3 skipped (v4, v6, v8)", len(c.queue), c.stats.skipped.Load())
	}
	if job := <-c.queue; job.version != 2 {
		t.Fatalf("queued v%d", job.version)
	}
}
