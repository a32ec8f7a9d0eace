package history_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
)

// TestReplayerKeyedRecords: the replayer keeps the newest record of each
// key of keyed turns that have an outcome since it started, and a
// checkpoint takes those newer than its bound, sorted by key.
func TestReplayerKeyedRecords(t *testing.T) {
	r := history.NewReplayer()
	var prev log.Hash
	for v, turns := range [][]log.Turn{
		{{Cause: log.Cause{Via: log.ViaRPC, IdemKey: "b", IdemHash: bytes.Repeat([]byte{1}, 32), Outcome: &log.Outcome{Status: 200}}}},
		{{Cause: log.Cause{Via: log.ViaRPC, IdemKey: "a", IdemHash: bytes.Repeat([]byte{2}, 32), Outcome: &log.Outcome{Status: 200}}},
			{Cause: log.Cause{Via: log.ViaRPC, IdemKey: "no-outcome"}}, {Cause: log.Cause{Via: log.ViaRPC}}},
		{{Cause: log.Cause{Via: log.ViaRPC, IdemKey: "c", IdemHash: bytes.Repeat([]byte{3}, 32), Outcome: &log.Outcome{Status: 201}}}},
	} {
		ev := &log.Event{Format: log.FormatVersion, Class: "kv", Version: uint64(v + 1), Time: int64(100 * (v + 1)), Turns: turns, PrevHash: prev}
		data, err := log.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		rec := log.Record{Seq: uint64(v + 1), Data: data, Event: ev}
		if _, err := r.Apply(rec); err != nil {
			t.Fatal(err)
		}
		prev = rec.Hash()
	}
	if len(r.Keyed) != 3 {
		t.Fatalf("kept %d records, want 3 (a, b, c)", len(r.Keyed))
	}
	ck, err := r.Checkpoint(context.Background(), "kv", log.ID{}, 100) // b, at 100, is not newer
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, k := range ck.Keyed {
		keys = append(keys, k.Cause.IdemKey)
	}
	if len(keys) != 2 || keys[0] != "a" || keys[1] != "c" || ck.Keyed[1].Time != 300 {
		t.Fatalf("checkpoint records %v, want [a c] with c at 300", keys)
	}
	// The next checkpoint carries only the records since this one.
	if back := history.FromCheckpoint(ck); len(back.Keyed) != 0 {
		t.Fatalf("a replayer from the checkpoint starts with %d records, want none", len(back.Keyed))
	}
}
