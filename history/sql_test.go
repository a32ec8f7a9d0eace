package history_test

import (
	"context"
	"reflect"
	"testing"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
)

// One event whose turns change one row again and again, with a schema
// change between them: the replayer applies the row changes in order
// around the schema change, describes each by the columns its table had
// then, and ends with the rows the turns left.
func TestReplayerSQLEventOfManyTurns(t *testing.T) {
	upd := func(old, new []any) log.Turn {
		return log.Turn{Cause: log.Cause{Via: log.ViaRPC}, SQL: []log.SQLChange{{Op: log.OpSQLUpdate, Table: "c", RowID: 1, NewRowID: 1, Old: old, New: new}}}
	}
	schema := func(q string) log.Turn {
		return log.Turn{Cause: log.Cause{Via: log.ViaRPC}, SQL: []log.SQLChange{{Op: log.OpSQLSchema, Stmt: q}}}
	}
	events := [][]log.Turn{
		{schema("CREATE TABLE c(k TEXT PRIMARY KEY, v INTEGER)"),
			{Cause: log.Cause{Via: log.ViaRPC}, SQL: []log.SQLChange{{Op: log.OpSQLInsert, Table: "c", RowID: 1, New: []any{"x", int64(1)}}}}},
		{upd([]any{"x", int64(1)}, []any{"x", int64(2)}), upd([]any{"x", int64(2)}, []any{"x", int64(3)}),
			schema("ALTER TABLE c ADD COLUMN note TEXT"),
			upd([]any{"x", int64(3), nil}, []any{"x", int64(4), "n"}), upd([]any{"x", int64(4), "n"}, []any{"x", int64(5), "n"})},
	}
	r := history.NewReplayer()
	defer r.Close()
	var prev log.Hash
	var texts []string
	for v, turns := range events {
		ev := &log.Event{Format: log.FormatVersion, Class: "sql", Version: uint64(v + 1), Time: int64(v + 1), Turns: turns, PrevHash: prev}
		data, err := log.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		rec := log.Record{Seq: uint64(v + 1), Data: data, Event: ev}
		e, err := r.Apply(rec)
		if err != nil {
			t.Fatal(err)
		}
		for _, turn := range e.Turns {
			for _, c := range turn.SQL {
				texts = append(texts, c.Text)
			}
		}
		prev = rec.Hash()
	}
	want := []string{
		"schema: CREATE TABLE c(k TEXT PRIMARY KEY, v INTEGER)",
		`table c: insert rowid=1 k "x" v 1`,
		"table c: rowid=1 v 1 → 2",
		"table c: rowid=1 v 2 → 3",
		"schema: ALTER TABLE c ADD COLUMN note TEXT",
		`table c: rowid=1 v 3 → 4 note NULL → "n"`,
		"table c: rowid=1 v 4 → 5",
	}
	if !reflect.DeepEqual(texts, want) {
		t.Fatalf("descriptions\n%q\nwant\n%q", texts, want)
	}
	tables, err := r.SQL().Dump(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(tables) != 1 || !reflect.DeepEqual(tables[0].Rows, [][]any{{"x", int64(5), "n"}}) {
		t.Fatalf("tables %+v", tables)
	}
}
