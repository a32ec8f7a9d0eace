package history_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

type jsonCodec struct{}

func (jsonCodec) Decode(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

// op is one write the workload made, as history must show it.
type op struct {
	version uint64
	kind    string
	key     string
	old     string // "" when absent
	new     string
}

// workload drives random kv turns on one object and records, per version,
// the expected state and the writes.
func workload(t *testing.T, n *testnode.Node, name string, turns int) (states map[uint64]map[string]string, ops []op, times map[uint64]time.Time) {
	t.Helper()
	ctx := context.Background()
	ref, err := n.Runtime.RefByName("kv", name)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[string]string{}
	states = map[uint64]map[string]string{0: {}}
	times = map[uint64]time.Time{}
	for i := 0; i < turns; i++ {
		key := fmt.Sprintf("k%d", rng.IntN(6))
		var method, body string
		var pending []op
		switch r := rng.IntN(10); {
		case r == 0:
			method, body = "delete-all", ""
			keys := make([]string, 0, len(model))
			for k := range model {
				keys = append(keys, k)
			}
			slicesSort(keys)
			for _, k := range keys {
				pending = append(pending, op{kind: "delete", key: k, old: model[k]})
			}
			clear(model)
		case r < 4:
			if _, ok := model[key]; !ok {
				continue // a delete of nothing still writes; keep the model simple
			}
			method, body = "delete", fmt.Sprintf(`{"key":%q}`, key)
			pending = append(pending, op{kind: "delete", key: key, old: model[key]})
			delete(model, key)
		default:
			v := fmt.Sprint(i)
			method, body = "put", fmt.Sprintf(`{"key":%q,"value":%s}`, key, v)
			pending = append(pending, op{kind: "put", key: key, old: model[key], new: v})
			model[key] = v
		}
		if _, err := n.Runtime.Call(ctx, ref, method, []byte(body), jsonCodec{}, objects.Cause{RequestID: fmt.Sprint("req-", i)}); err != nil {
			t.Fatal(err)
		}
		last, err := n.Log.Last(ctx, "kv", ref.ID)
		if err != nil {
			t.Fatal(err)
		}
		v := last.Event.Version
		for j := range pending {
			pending[j].version = v
		}
		ops = append(ops, pending...)
		states[v] = maps.Clone(model)
		times[v] = time.Unix(0, last.Event.Time)
	}
	return states, ops, times
}

func slicesSort(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func start(t *testing.T) *testnode.Node {
	return testnode.Start(t, classes.All(), nil)
}

// TestHistoryComplete: every write of a random workload appears once, in
// order, with the right old and new values.
func TestHistoryComplete(t *testing.T) {
	n := start(t)
	_, want, _ := workload(t, n, "h", 120)
	var got []op
	id := objects.IDFromName("kv", "h")
	err := history.Events(context.Background(), n.Log, "kv", id, history.Range{}, func(e history.Entry) error {
		for _, turn := range e.Turns {
			if turn.Cause.Via != log.ViaRPC || turn.Cause.RequestID == "" {
				return fmt.Errorf("version %d: cause %+v", e.Version, turn.Cause)
			}
			for _, c := range turn.Changes {
				got = append(got, op{version: e.Version, kind: c.Op, key: c.Key, old: string(c.Old), new: string(c.New)})
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("history shows %d changes, the workload made %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("change %d: history %+v, workload %+v", i, got[i], want[i])
		}
	}
	// A range shows exactly its versions.
	var versions []uint64
	history.Events(context.Background(), n.Log, "kv", id, history.Range{From: 5, To: 9, Limit: 3}, func(e history.Entry) error {
		versions = append(versions, e.Version)
		return nil
	})
	if fmt.Sprint(versions) != "[5 6 7]" {
		t.Fatalf("range 5..9 limit 3 gave versions %v", versions)
	}
}

// TestTimeTravel: the state at every version, and at every event's time,
// equals what the workload recorded then.
func TestTimeTravel(t *testing.T) {
	n := start(t)
	states, _, times := workload(t, n, "tt", 60)
	ctx := context.Background()
	id := objects.IDFromName("kv", "tt")
	for v, want := range states {
		if v == 0 {
			continue
		}
		for _, at := range []history.At{{Version: v}, {Time: times[v]}} {
			st, err := history.StateAt(ctx, n.Log, "kv", id, at)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for k, val := range st.Keys {
				got[k] = string(val)
			}
			if st.Version != v || !maps.Equal(got, want) {
				t.Fatalf("state at %+v: version %d %v, want version %d %v", at, st.Version, got, v, want)
			}
		}
	}
	var last uint64
	for v := range states {
		last = max(last, v)
	}
	for _, at := range []history.At{{Version: last + 1}, {Time: times[1].Add(-time.Second)}} {
		if _, err := history.StateAt(ctx, n.Log, "kv", id, at); !errors.Is(err, history.ErrBadRange) {
			t.Fatalf("state at %+v: %v, want ErrBadRange", at, err)
		}
	}
}

// TestAuditCatchesForgery: an event republished behind Strata's back, with
// a changed value, breaks the hash chain where it stands.
func TestAuditCatchesForgery(t *testing.T) {
	n := start(t)
	workload(t, n, "a", 10)
	ctx := context.Background()
	id := objects.IDFromName("kv", "a")
	rep, err := history.Verify(ctx, n.Log, "kv", id)
	if err != nil || !rep.OK || rep.Events == 0 {
		t.Fatalf("honest chain: %+v %v", rep, err)
	}
	// The forger takes event 3, changes a value, and appends it as the
	// next event with a plausible version: a client with publish rights
	// on the subject, not Strata.
	var third, last log.Record
	n.Log.Read(ctx, "kv", id, 1, func(r log.Record) error {
		if r.Event.Version == 3 {
			third = r
		}
		last = r
		return nil
	})
	forged := *third.Event
	forged.Version = last.Event.Version + 1
	forged.Turns = append([]log.Turn(nil), third.Event.Turns...)
	forged.Turns[0].Writes = []log.Write{{Op: log.OpPut, Key: "k0", Value: []byte(`"forged"`)}}
	data, err := log.Encode(&forged)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(n.Server))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := nc.JetStream()
	shard := n.Log.ShardOf(id)
	ack, err := js.Publish(log.ObjectSubject(shard, "kv", id), data)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = history.Verify(ctx, n.Log, "kv", id)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.BrokenAt != ack.Sequence || rep.Version != forged.Version {
		t.Fatalf("forgery at sequence %d not caught: %+v", ack.Sequence, rep)
	}
}

// TestAuditCatchesForgedCheckpoint: a checkpoint manifest republished
// behind Strata's back with another chain hash breaks the audit, and one
// whose state does not match its chunks does not load.
func TestAuditCatchesForgedCheckpoint(t *testing.T) {
	n := testnode.Start(t, classes.All(), func(c *objects.Config) { c.Checkpoints = objects.CheckpointConfig{Every: 5} })
	workload(t, n, "c", 12)
	ctx := context.Background()
	if err := n.Runtime.FlushCheckpoints(ctx); err != nil {
		t.Fatal(err)
	}
	id := objects.IDFromName("kv", "c")
	rep, err := history.Verify(ctx, n.Log, "kv", id)
	if err != nil || !rep.OK || rep.Checkpoints != 2 {
		t.Fatalf("honest chain with checkpoints: %+v %v", rep, err)
	}
	info, err := n.Log.LastCheckpoint(ctx, "kv", id)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect("", nats.InProcessServer(n.Server))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	subj := fmt.Sprintf("strata.%d.ckpt.kv.%s.m", n.Log.ShardOf(id), id)
	forge := func(edit func(*log.CheckpointInfo)) {
		t.Helper()
		f := info
		edit(&f)
		data, err := cbor.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := nc.Publish(subj, data); err != nil {
			t.Fatal(err)
		}
		nc.Flush()
		for deadline := time.Now().Add(5 * time.Second); ; {
			if got, err := n.Log.LastCheckpoint(ctx, "kv", id); err == nil && got.StateHash == f.StateHash && got.Hash == f.Hash {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("forged manifest not stored")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	forge(func(f *log.CheckpointInfo) { f.StateHash[0] ^= 1 })
	forged, _ := n.Log.LastCheckpoint(ctx, "kv", id)
	if _, err := n.Log.LoadCheckpoint(ctx, forged); !errors.Is(err, log.ErrBadCheckpoint) {
		t.Fatalf("checkpoint with a forged state hash loaded: %v", err)
	}
	forge(func(f *log.CheckpointInfo) { f.Hash[0] ^= 1 })
	rep, err = history.Verify(ctx, n.Log, "kv", id)
	if err != nil || rep.OK || rep.Version != info.Version {
		t.Fatalf("forged checkpoint hash at v%d not caught: %+v %v", info.Version, rep, err)
	}
}
