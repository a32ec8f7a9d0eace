package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// TestCheckpointKeyedTurns: a checkpoint keeps the records of keyed turns
// in chunks of their own, covered by the state hash, and gives them back.
func TestCheckpointKeyedTurns(t *testing.T) {
	l, id, r := ckptObject(t, 3)
	ctx := context.Background()
	var keyed []KeyedTurn
	for i := range 20 { // 20 × 64 KiB: more than one chunk
		keyed = append(keyed, KeyedTurn{Time: int64(i), Cause: Cause{Via: ViaRPC, Method: "m", IdemKey: fmt.Sprint("k", i),
			IdemHash: bytes.Repeat([]byte{byte(i)}, 32), Outcome: &Outcome{Status: 200, Body: bytes.Repeat([]byte{'x'}, OutcomeBodyBytesMax)}}})
	}
	ck := &Checkpoint{Class: "test", ID: id, Version: 1, Seq: r.Seq, Hash: r.Hash(), Keys: map[string][]byte{"k": []byte("v")}, Alarms: map[string]int64{}, Keyed: keyed}
	if err := l.WriteCheckpoint(ctx, ck); err != nil {
		t.Fatal(err)
	}
	info, err := l.LastCheckpoint(ctx, "test", id)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.KeyedChunks) < 2 || info.Keyed != 20 {
		t.Fatalf("manifest: %d record chunks, %d records; want several chunks, 20", len(info.KeyedChunks), info.Keyed)
	}
	got, err := l.LoadCheckpoint(ctx, info)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Keyed, keyed) || string(got.Keys["k"]) != "v" {
		t.Fatalf("loaded %d records and keys %v, want the 20 written and k=v", len(got.Keyed), got.Keys)
	}
	// The records alone, without the state.
	only, err := l.LoadKeyed(ctx, info)
	if err != nil || !reflect.DeepEqual(only, keyed) {
		t.Fatalf("LoadKeyed: %d records, %v", len(only), err)
	}
	// A manifest that claims another count, or misses a chunk, is refused.
	bad := info
	bad.Keyed = 19
	if _, err := l.LoadCheckpoint(ctx, bad); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("a manifest with the wrong record count: %v, want ErrBadCheckpoint", err)
	}
	bad = info
	bad.KeyedChunks = bad.KeyedChunks[1:]
	if _, err := l.LoadKeyed(ctx, bad); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("a manifest missing a chunk: %v, want ErrBadCheckpoint", err)
	}
}
