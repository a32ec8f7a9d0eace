package jsclass

import (
	"context"
	"fmt"

	"github.com/strata-objects/strata/history"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
	"github.com/strata-objects/strata/sqlstore"
)

// The SQL state of a replay. A replayed object's SQL database is rebuilt in
// memory from its events, as history rebuilds it (history/sql.go): every
// turn's recorded changes are applied in order. A replayed turn runs in a
// write transaction over that state; its statements' changes are captured
// (as the live turn's are) and compared with the recorded ones, and the
// transaction is rolled back before the recorded changes are applied.
//
//   - The database is opened on first need: the first recorded change, or
//     the first statement (or storage.transaction()) of new code. Until
//     then the object's SQL state is empty, so nothing is lost.
//   - A turn whose recorded record spans events (a call staged the writes
//     before it) is replayed from the state before its first part: the
//     parts' recorded changes are applied inside a transaction (hold),
//     rolled back before the joined turn runs, then applied for good.
//   - storage.transaction() opens a savepoint (the live turn's do, see
//     objects/sqlstate.go); a rollback drops its captured changes too.
type replaySQL struct {
	ctx     context.Context
	db      *sqlstore.DB
	holding bool // parts of a turn are applied in a transaction (hold)
	held    bool // that transaction is open
	inTurn  bool // a replayed turn runs: its transaction opens with the database
	turnTx  bool // the turn's transaction is open
	chs     []log.SQLChange
	txs     []replayTx // open storage.transaction()s, innermost last
}

type replayTx struct {
	store     *replayStore
	savepoint string
	mark      int // len(chs) when it began
}

func (r *replaySQL) open() (*sqlstore.DB, error) {
	if r.db != nil {
		return r.db, nil
	}
	db, err := sqlstore.Open(r.ctx, "", sqlstore.Config{})
	if err != nil {
		return nil, fmt.Errorf("replay: open an SQL database: %w", err)
	}
	r.db = db
	return db, nil
}

func (r *replaySQL) close() {
	if r.db != nil {
		r.db.Close()
		r.db = nil
	}
}

// apply folds recorded changes into the state.
func (r *replaySQL) apply(chs []log.SQLChange) error {
	if len(chs) == 0 {
		return nil
	}
	db, err := r.open()
	if err != nil {
		return err
	}
	if r.holding && !r.held {
		if err := db.Begin(r.ctx); err != nil {
			return err
		}
		r.held = true
	}
	return db.Apply(r.ctx, chs)
}

// hold starts holding the parts of a turn; release ends it: keep applies
// them for good (the turn was not replayed), else they are undone.
func (r *replaySQL) hold() { r.holding = true }

func (r *replaySQL) release(keep bool) error {
	r.holding = false
	if !r.held {
		return nil
	}
	r.held = false
	if keep {
		return r.db.Commit(r.ctx)
	}
	return r.db.Rollback(r.ctx)
}

// beginTurn readies a replayed turn's SQL; endTurn undoes it and returns
// the changes the turn made.
func (r *replaySQL) beginTurn() error {
	r.inTurn, r.chs, r.txs = true, nil, nil
	if r.db != nil {
		if err := r.db.Begin(r.ctx); err != nil {
			return err
		}
		r.turnTx = true
	}
	return nil
}

func (r *replaySQL) endTurn() ([]log.SQLChange, error) {
	chs := r.chs
	r.inTurn, r.chs, r.txs = false, nil, nil
	if !r.turnTx {
		return chs, nil
	}
	r.turnTx = false
	return chs, r.db.Rollback(r.ctx)
}

// turnDB is the database a replayed turn's statements run on.
func (r *replaySQL) turnDB() (*sqlstore.DB, error) {
	db, err := r.open()
	if err != nil {
		return nil, err
	}
	if r.inTurn && !r.turnTx {
		if err := db.Begin(r.ctx); err != nil {
			return nil, err
		}
		r.turnTx = true
		// Opened inside storage.transaction()s: they start here (the
		// database had nothing of theirs before).
		for i := range r.txs {
			if err := r.savepoint(i); err != nil {
				return nil, err
			}
		}
	}
	return db, nil
}

func (r *replaySQL) savepoint(i int) error {
	sp := fmt.Sprintf("strata_tx%d", i+1)
	if err := r.db.Savepoint(r.ctx, sp); err != nil {
		return err
	}
	r.txs[i].savepoint = sp
	return nil
}

// Exec runs a statement of the replayed turn (objects.SQL.Exec's part).
func (r *replaySQL) Exec(query string, args ...any) (sqlResult, error) {
	db, err := r.turnDB()
	if err != nil {
		return nil, err
	}
	res, chs, err := db.Query(r.ctx, query, args...)
	if err != nil {
		return nil, err
	}
	r.chs = append(r.chs, chs...)
	return resultView{res}, nil
}

func (r *replaySQL) DatabaseSize() (int64, error) {
	db, err := r.turnDB()
	if err != nil {
		return 0, err
	}
	return db.Size(r.ctx)
}

// txBegin, txEnd: storage.transaction() in a replayed turn, child begun on
// parent. Its savepoint opens with the database, if that is not open yet.
func (r *replaySQL) txBegin(parent, child *replayStore) error {
	n := len(r.txs)
	if (n > 0 && r.txs[n-1].store != parent) || (n == 0 && parent.parent != nil) {
		return fmt.Errorf("%w: storage.transaction() beside an open transaction (begin it inside that one, or after it ends)", objects.ErrBadInput)
	}
	r.txs = append(r.txs, replayTx{store: child, mark: len(r.chs)})
	if r.turnTx {
		return r.savepoint(n)
	}
	return nil
}

func (r *replaySQL) txEnd(s *replayStore, keep bool) error {
	n := len(r.txs)
	if n == 0 || r.txs[n-1].store != s {
		return fmt.Errorf("%w: a transaction ended while one begun inside it is still open", objects.ErrBadInput)
	}
	tx := r.txs[n-1]
	r.txs = r.txs[:n-1]
	if !keep {
		r.chs = r.chs[:tx.mark]
	}
	switch {
	case tx.savepoint == "":
		return nil
	case keep:
		return r.db.Release(r.ctx, tx.savepoint)
	}
	return r.db.RollbackTo(r.ctx, tx.savepoint)
}

// diff compares a turn's recorded SQL changes with the new code's, in
// order, as history describes them.
func (r *replaySQL) diff(recorded, got []log.SQLChange) []string {
	text := func(c log.SQLChange) string {
		var cols []string
		if c.Op != log.OpSQLSchema && r.db != nil {
			cols, _ = r.db.Columns(r.ctx, c.Table)
		}
		return history.DescribeSQL(c, cols)
	}
	return diffInOrder("sql", recorded, got, text, nil)
}

// resultView is a replayed statement's rows, as a cursor reads them.
type resultView struct{ res *sqlstore.Result }

func (v resultView) Columns() []string  { return v.res.Columns }
func (v resultView) Raw() [][]any       { return v.res.Rows }
func (v resultView) RowsRead() int64    { return v.res.RowsRead }
func (v resultView) RowsWritten() int64 { return v.res.RowsWritten }
