package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// ckptObject opens a log on a new server and appends object n's first
// event, for a checkpoint test to write a checkpoint at.
func ckptObject(t *testing.T, n int) (*Log, ID, Record) {
	t.Helper()
	l := openLog(t, startServer(t), Config{})
	id := objID(n)
	r, err := l.Append(context.Background(), testEvent(id, 1, "a"), 0)
	if err != nil {
		t.Fatal(err)
	}
	return l, id, r
}

// TestCheckpointSQL: a checkpoint keeps the SQL state in chunks of its
// own, read back by LoadSQL equal to what was written (values in the
// types SQL uses); a manifest that claims another count or misses a chunk
// is refused; a checkpoint without SQL state says so (HasSQL false).
func TestCheckpointSQL(t *testing.T) {
	l, id, r := ckptObject(t, 4)
	ctx := context.Background()
	chs := []SQLChange{{Op: OpSQLSchema, Stmt: "CREATE TABLE t(a, b, c, d)"}}
	for i := range 30 { // 30 × 32 KiB: more than one chunk
		chs = append(chs, SQLChange{Op: OpSQLInsert, Table: "t", RowID: int64(i + 1),
			New: []any{int64(-i), float64(i) / 3, fmt.Sprint("row ", i), bytes.Repeat([]byte{byte(i)}, 32<<10)}})
	}
	chs = append(chs, SQLChange{Op: OpSQLSchema, Stmt: "CREATE INDEX t_a ON t(a)"})
	ck := &Checkpoint{Class: "test", ID: id, Version: 1, Seq: r.Seq, Hash: r.Hash(), Keys: map[string][]byte{}, SQL: chs, HasSQL: true}
	if err := l.WriteCheckpoint(ctx, ck); err != nil {
		t.Fatal(err)
	}
	info, err := l.LastCheckpoint(ctx, "test", id)
	if err != nil {
		t.Fatal(err)
	}
	if !info.HasSQL || len(info.SQLChunks) < 2 || info.SQLChanges != uint64(len(chs)) {
		t.Fatalf("manifest: has SQL %v, %d chunks, %d changes; want several chunks, %d", info.HasSQL, len(info.SQLChunks), info.SQLChanges, len(chs))
	}
	got, err := l.LoadSQL(ctx, info)
	if err != nil || !reflect.DeepEqual(got, chs) {
		t.Fatalf("LoadSQL: %d changes, %v; want the %d written", len(got), err, len(chs))
	}
	if loaded, err := l.LoadCheckpoint(ctx, info); err != nil || !loaded.HasSQL || loaded.SQL != nil {
		t.Fatalf("LoadCheckpoint: has SQL %v, %d changes (LoadSQL reads them), %v", loaded.HasSQL, len(loaded.SQL), err)
	}
	bad := info
	bad.SQLChanges--
	if _, err := l.LoadSQL(ctx, bad); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("a manifest with the wrong change count: %v, want ErrBadCheckpoint", err)
	}
	bad = info
	bad.SQLChunks = bad.SQLChunks[1:]
	if _, err := l.LoadSQL(ctx, bad); !errors.Is(err, ErrBadCheckpoint) {
		t.Fatalf("a manifest missing a chunk: %v, want ErrBadCheckpoint", err)
	}
	// A checkpoint written without SQL state (as before they carried it).
	r2, err := l.Append(ctx, testEvent(id, 2, "b"), r.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteCheckpoint(ctx, &Checkpoint{Class: "test", ID: id, Version: 2, Seq: r2.Seq, Hash: r2.Hash(), Keys: map[string][]byte{}}); err != nil {
		t.Fatal(err)
	}
	if info, err := l.LastCheckpoint(ctx, "test", id); err != nil || info.Version != 2 || info.HasSQL || len(info.SQLChunks) != 0 {
		t.Fatalf("checkpoint without SQL: %+v %v", info, err)
	}
}
