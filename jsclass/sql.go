package jsclass

import (
	"errors"
	"fmt"
	"math"

	"github.com/dop251/goja"
	"github.com/strata-objects/strata/objects"
)

// ctx.storage.sql: Cloudflare's SqlStorage over the turn's objects.SQL.
// exec runs at once (as on Cloudflare, SQL is synchronous) and returns a
// cursor over the materialized rows; the cursor itself is the prelude's
// (SqlStorageCursor), built from the columns and raw rows.

// sqlRunner is where a turn's statements run: the turn's objects.SQL, or
// the replay's database (replaysql.go).
type sqlRunner interface {
	Exec(query string, args ...any) (sqlResult, error)
	DatabaseSize() (int64, error)
}

// sqlResult is a statement's materialized rows.
type sqlResult interface {
	Columns() []string
	Raw() [][]any
	RowsRead() int64
	RowsWritten() int64
}

type liveSQL struct{ s *objects.SQL }

func (l liveSQL) Exec(query string, args ...any) (sqlResult, error) {
	c, err := l.s.Exec(query, args...)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (l liveSQL) DatabaseSize() (int64, error) { return l.s.DatabaseSize() }

func (in *instance) sqlObject() *goja.Object {
	vm := in.vm
	s := newLazy(vm)
	s.define("exec", func(call goja.FunctionCall) goja.Value {
		if len(call.Arguments) == 0 || goja.IsUndefined(call.Arguments[0]) {
			in.throw(fmt.Errorf("%w: sql.exec: a query is required", objects.ErrBadInput))
		}
		query := call.Arguments[0].String()
		args := make([]any, 0, len(call.Arguments)-1)
		for i, a := range call.Arguments[1:] {
			v, err := sqlBinding(a)
			if err != nil {
				in.throw(fmt.Errorf("%w: sql.exec binding %d: %v", objects.ErrBadInput, i+1, err))
			}
			args = append(args, v)
		}
		db := in.sqlDB()
		cur, err := db.Exec(query, args...)
		if err != nil {
			in.throw(err)
		}
		return in.cursor(cur)
	})
	s.define("databaseSize", getterFunc(func() goja.Value {
		n, err := in.sqlDB().DatabaseSize()
		if err != nil {
			in.throw(err)
		}
		return vm.ToValue(n)
	}))
	return s.obj
}

// sqlDB is the turn's SQL database.
func (in *instance) sqlDB() sqlRunner {
	switch {
	case in.replay:
		return in.replaySQL
	case in.c == nil:
		in.throw(errors.New("SQL storage used outside a turn"))
	}
	return liveSQL{in.c.SQL()}
}

// sqlBinding is a JavaScript value as a SQLite value: null, a number
// (integer if it is one), a string, an ArrayBuffer or a view of one
// (a blob), a boolean (1 or 0), as Cloudflare binds them.
func sqlBinding(v goja.Value) (any, error) {
	if v == nil || goja.IsUndefined(v) {
		return nil, errors.New("undefined cannot be bound (use null)")
	}
	if goja.IsNull(v) {
		return nil, nil
	}
	switch x := v.Export().(type) {
	case int64, string:
		return x, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return int64(x), nil
		}
		return x, nil
	case bool:
		if x {
			return int64(1), nil
		}
		return int64(0), nil
	case []byte:
		return append([]byte{}, x...), nil
	case goja.ArrayBuffer:
		return append([]byte{}, x.Bytes()...), nil
	}
	if o, ok := v.(*goja.Object); ok {
		if b := o.Get("buffer"); b != nil {
			buf, ok := b.Export().(goja.ArrayBuffer) // any other view
			if !ok {
				return nil, fmt.Errorf("a %s cannot be bound", o.ClassName())
			}
			off, n := int(o.Get("byteOffset").ToInteger()), int(o.Get("byteLength").ToInteger())
			if off >= 0 && n >= 0 && off+n <= len(buf.Bytes()) {
				return append([]byte{}, buf.Bytes()[off:off+n]...), nil
			}
		}
		return nil, fmt.Errorf("a %s cannot be bound (null, numbers, strings, booleans, ArrayBuffer and typed arrays can)", o.ClassName())
	}
	return nil, fmt.Errorf("a %s cannot be bound", v.ExportType())
}

// sqlValue is a SQLite value as Cloudflare gives it to JavaScript:
// integers and reals as numbers, text as strings, blobs as ArrayBuffers.
func sqlValue(vm *goja.Runtime, v any) goja.Value {
	switch x := v.(type) {
	case nil:
		return goja.Null()
	case []byte:
		return vm.ToValue(vm.NewArrayBuffer(append([]byte{}, x...)))
	case int64:
		if x > 1<<53 || x < -(1<<53) {
			return vm.ToValue(float64(x)) // as a JavaScript number holds it
		}
		return vm.ToValue(x)
	}
	return vm.ToValue(v)
}

// cursor builds the prelude's SqlStorageCursor over a result.
func (in *instance) cursor(cur sqlResult) goja.Value {
	vm := in.vm
	cols := cur.Columns()
	names := make([]any, len(cols))
	for i, c := range cols {
		names[i] = c
	}
	raw := cur.Raw()
	rows := make([]any, len(raw))
	for i, r := range raw {
		row := make([]any, len(r))
		for j, v := range r {
			row[j] = sqlValue(vm, v)
		}
		rows[i] = vm.NewArray(row...)
	}
	mk, ok := goja.AssertFunction(in.host.Get("makeCursor"))
	if !ok {
		in.throw(errors.New("prelude: no makeCursor"))
	}
	c, err := mk(goja.Undefined(), vm.NewArray(names...), vm.NewArray(rows...), vm.ToValue(cur.RowsRead()), vm.ToValue(cur.RowsWritten()))
	if err != nil {
		panic(err)
	}
	return c
}
