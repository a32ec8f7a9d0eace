package sqlstore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
)

// The statements a turn runs (the user's, and the transaction's own:
// BEGIN, SAVEPOINT, RELEASE, the applied position, COMMIT) go to the
// driver's connection directly, inside sql.Conn.Raw, not through
// database/sql's statements and rows: for a one-row upsert those cost
// about as much as SQLite executing it (issue 17, docs/benchmarks.md):
// per query a goroutine that closes the rows when the context ends
// (besides the driver's own that interrupts the statement), a lock per
// row and per call, the arguments converted and checked, the result
// wrapped. What they did that matters here is done below: arguments
// converted as database/sql converts them, the driver's values copied
// out before the next row, the statement reset when its rows close.
//
// A prepared driver statement belongs to the connection it was prepared
// on and is used only inside Raw, as database/sql requires; the
// connection is this DB's alone (sql.Conn, one connection).

// rawConn is what the driver's connection must offer.
type rawConn interface {
	driver.ConnPrepareContext
}

// rawStmt is what the driver's statements must offer.
type rawStmt interface {
	driver.Stmt
	driver.StmtQueryContext
	driver.StmtExecContext
}

var errNoRawDriver = errors.New("sqlstore: the SQLite driver lacks context-aware statements")

// raw runs f on the driver's connection.
func (d *DB) raw(f func(c rawConn) error) error {
	return d.conn.Raw(func(dc any) error {
		c, ok := dc.(rawConn)
		if !ok {
			return errNoRawDriver
		}
		return f(c)
	})
}

// prepareRaw prepares q on the driver's connection.
func prepareRaw(ctx context.Context, c rawConn, q string) (rawStmt, error) {
	ds, err := c.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	st, ok := ds.(rawStmt)
	if !ok {
		ds.Close()
		return nil, errNoRawDriver
	}
	return st, nil
}

// namedValues converts a query's arguments as database/sql does for a
// driver that checks none itself (driver.DefaultParameterConverter).
func namedValues(args []any) ([]driver.NamedValue, error) {
	if len(args) == 0 {
		return nil, nil
	}
	nv := make([]driver.NamedValue, len(args))
	for i, a := range args {
		v, err := driver.DefaultParameterConverter.ConvertValue(a)
		if err != nil {
			return nil, err
		}
		nv[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return nv, nil
}

// readRows reads every row of rows into res (bounded by ResultBytesMax)
// and closes rows. It stops between rows once ctx ends, as database/sql's
// rows do; the driver interrupts the statement's first step itself.
func readRows(ctx context.Context, rows driver.Rows, res *Result) (err error) {
	defer func() {
		if cerr := rows.Close(); err == nil {
			err = cerr
		}
	}()
	res.Columns = rows.Columns()
	n := len(res.Columns)
	dest := make([]driver.Value, n)
	bytes := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := rows.Next(dest); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		vals := make([]any, n)
		for i, v := range dest {
			if b, ok := v.([]byte); ok {
				// database/sql copies bytes a driver may reuse
				v = append([]byte(nil), b...)
			}
			vals[i] = normal(v)
			bytes += valueBytes(vals[i])
		}
		if bytes > ResultBytesMax {
			return errResultTooLarge
		}
		res.Rows = append(res.Rows, vals)
	}
}

// errResultTooLarge refuses a result past ResultBytesMax.
var errResultTooLarge = fmt.Errorf("%w: result over %d bytes; select fewer rows (LIMIT)", ErrRefused, ResultBytesMax)
