package objects

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/sqlstore"
)

// Where an object's SQL database lives, and how it follows the log.
//
// The snapshot of an object's SQL state is one SQLite file per object
// under Config.SQLDir (<dir>/<class>/<id[:2]>/<id>.db), beside Badger and,
// like it, derived from the log: the file stores the version and stream
// sequence of the last event it holds in the same transaction as the rows.
// The activation that owns the object is its only writer:
//
//  1. The database is opened on the turn's first SQL use and caught up from
//     the log: every event after the file's sequence, up to the newest
//     acknowledged one, has its SQL changes applied (events before SQL
//     existed have none). A file a checkpoint interval or more behind (or
//     none: a new node, after `strata rebuild`) starts from the newest
//     checkpoint's SQL state instead (sqlCheckpoint), so building it reads
//     at most an interval of events. The open database is part of the activation:
//     eviction closes it, so open databases are bounded as activations
//     are (Config.MaxActivations).
//  2. Turns run in one write transaction that holds every change not yet
//     in the file (sqlState.pend, by event version); each turn in a
//     savepoint, or, when at most sqlLooseRowsMax row changes are pending,
//     in the transaction itself: such a turn, if it fails, rolls the
//     transaction back and applies the pending changes again (sqlUndo);
//     each Exec in a savepoint inside it, except the first while the
//     turn's is still empty (outside Storage.Transaction), which rolls the
//     turn's back when it fails; each Storage.Transaction in a savepoint
//     too. A failed turn rolls back to its savepoint (or the whole
//     transaction): its rows go with its key-value writes.
//  3. When the log has acknowledged sqlCommitEvents events of the
//     transaction and nothing newer waits in it, the transaction commits
//     with the acknowledged position (settle); so does the activation's
//     idle tick (Config.IdleTimeout) and its end. If newer turns keep the
//     transaction busy for longer than sqlPendMax events, it is rolled
//     back and rebuilt: the acknowledged changes committed, the rest
//     applied again. So the file never holds a change the log does not,
//     and lags it by a bounded amount.
//  4. A fenced or failed activation rolls back: the next one catches up
//     from the log. A crash (SIGKILL) loses at most the uncommitted
//     transaction, which the log has.
type sqlState struct {
	db     *sqlstore.DB
	inTxn  bool // a write transaction is open
	pend   []sqlPend
	rows   int    // row and schema changes in pend
	fileV  uint64 // committed position of the file
	fileS  uint64
	ackV   uint64 // newest acknowledged event
	ackS   uint64
	broken error
}

type sqlPend struct {
	version uint64
	chs     []log.SQLChange
}

// sqlPendMax bounds the events a busy transaction holds before it is
// rebuilt to commit the acknowledged ones.
const sqlPendMax = 64

// sqlLooseRowsMax: a turn runs without a savepoint of its own when the
// transaction holds at most this many pending changes. If it fails, the
// transaction is rolled back and they are applied again, folded
// (sqlstore.DB.Apply writes a run of changes to one row once), which
// costs a failed turn at most this many row writes (one for a counter),
// where a SAVEPOINT and a RELEASE cost every turn a statement each, on a
// database whose memory is cold when the object is one of many (W3-sql),
// and on a busy object, whose transaction holds many turns' changes
// (W2-sql: issue 17).
const sqlLooseRowsMax = 512

// sqlCommitEvents: the transaction commits when this many acknowledged
// events with SQL changes wait in it (and nothing newer does), at the
// activation's idle tick, and when the activation ends. A crash loses the
// uncommitted events from the file (at most sqlPendMax), which the next
// activation reads again from the log. A commit writes the pages the
// events changed to the WAL, with a system call per page, and the
// applied position: per event, at 16, that was a tenth of W3-sql's extra
// CPU over W3 (docs/benchmarks.md, issue 17).
const sqlCommitEvents = 64

func (a *activation) sqlPath() string {
	if a.rt.cfg.SQLDir == "" {
		return "" // in memory: caught up from the log on each activation
	}
	h := a.id.String()
	return filepath.Join(a.rt.cfg.SQLDir, a.class.name, h[:2], h+".db")
}

// sqlOpen opens the database and catches it up from the log (step 1).
func (a *activation) sqlOpen(ctx context.Context) (*sqlState, error) {
	if a.sql != nil {
		if a.sql.broken != nil {
			return nil, a.sql.broken
		}
		return a.sql, nil
	}
	path := a.sqlPath()
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("sql %s/%s: %w", a.class.name, a.id, err)
		}
	}
	db, err := sqlstore.Open(ctx, path, sqlstore.Config{SizeMax: a.class.sqlSizeMax})
	if err != nil {
		return nil, fmt.Errorf("sql %s/%s: %w", a.class.name, a.id, err)
	}
	st := &sqlState{db: db}
	if st.fileV, st.fileS, err = db.Applied(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sql %s/%s: %w", a.class.name, a.id, err)
	}
	if err := a.sqlCatchUp(ctx, st); err != nil {
		db.Close()
		return nil, fmt.Errorf("sql %s/%s: catch up: %w", a.class.name, a.id, err)
	}
	a.sql = st
	return st, nil
}

func (a *activation) sqlCatchUp(ctx context.Context, st *sqlState) error {
	acked := a.lastSeq // every event up to here is in the log
	st.ackV, st.ackS = st.fileV, st.fileS
	if st.fileS > acked {
		return fmt.Errorf("SQL snapshot at sequence %d is ahead of the log at %d", st.fileS, acked)
	}
	if st.fileS == acked {
		return nil
	}
	info, chs, err := a.sqlCheckpoint(ctx, st.fileV, acked)
	if err != nil {
		return err
	}
	if err := st.db.Begin(ctx); err != nil {
		return err
	}
	v, s := st.fileV, st.fileS
	if info.Version > 0 {
		// Start from the checkpoint: the file's tables go, the
		// checkpoint's come, in the transaction that also takes the
		// events after it, so a crash leaves the file as it was.
		if v > 0 {
			err = st.db.Reset(ctx)
		}
		if err == nil {
			err = st.db.Apply(ctx, chs)
		}
		if err != nil {
			st.db.Rollback(ctx)
			return fmt.Errorf("install checkpoint v%d: %w", info.Version, err)
		}
		v, s = info.Version, info.Seq
	}
	err = a.rt.log.Read(ctx, a.class.name, a.id, s+1, func(rec log.Record) error {
		if rec.Seq > acked {
			return errStopRead
		}
		if rec.Event.Version <= v {
			return nil
		}
		if rec.Event.Version != v+1 {
			return fmt.Errorf("%w: version %d after %d", errGap, rec.Event.Version, v)
		}
		for _, t := range rec.Event.Turns {
			if err := st.db.Apply(ctx, t.SQL); err != nil {
				return fmt.Errorf("v%d: %w", rec.Event.Version, err)
			}
		}
		v, s = rec.Event.Version, rec.Seq
		return nil
	})
	if err != nil && !errors.Is(err, errStopRead) {
		st.db.Rollback(ctx)
		return err
	}
	if err := st.db.SetApplied(ctx, v, s); err != nil {
		st.db.Rollback(ctx)
		return err
	}
	if err := st.db.Commit(ctx); err != nil {
		return err
	}
	st.fileV, st.fileS, st.ackV, st.ackS = v, s, v, s
	return nil
}

var errStopRead = errors.New("read far enough")

// sqlCheckpoint returns the newest checkpoint's SQL state when building
// the file from it reads fewer events than catching up from the file's
// version would: the file is at least a checkpoint interval behind (a
// new node, a rebuilt or deleted file), or the class drops old events.
// Otherwise, or when the newest checkpoint has no SQL state (written
// before checkpoints carried it), it returns a zero info.
func (a *activation) sqlCheckpoint(ctx context.Context, fileV, acked uint64) (log.CheckpointInfo, []log.SQLChange, error) {
	cfg, class := a.rt.ckpt.cfg, a.class.name
	n := cfg.every(class)
	if !cfg.Retain[class] && (n <= 0 || a.version < fileV+uint64(n)) {
		return log.CheckpointInfo{}, nil, nil
	}
	info, err := a.rt.log.LastCheckpoint(ctx, class, a.id)
	switch {
	case errors.Is(err, log.ErrNotFound):
		return log.CheckpointInfo{}, nil, nil
	case err != nil:
		return log.CheckpointInfo{}, nil, err
	case !info.HasSQL || info.Version <= fileV || info.Seq > acked:
		return log.CheckpointInfo{}, nil, nil
	}
	chs, err := a.rt.log.LoadSQL(ctx, info)
	if err != nil {
		return log.CheckpointInfo{}, nil, err
	}
	return info, chs, nil
}

// sqlBegin readies the turn's SQL: the database open and caught up, the
// write transaction and the turn's savepoint open.
func (t *turn) sqlBegin() (*sqlstore.DB, error) {
	st, err := t.a.sqlOpen(t.req.ctx)
	if err != nil {
		return nil, err
	}
	if t.sqlTurn {
		return st.db, nil
	}
	if !st.inTxn {
		// Nothing is pending: the transaction is the turn's alone, and
		// rolling it back undoes the turn (no savepoint needed).
		if err := st.db.Begin(t.req.ctx); err != nil {
			return nil, t.a.sqlBroken(err)
		}
		st.inTxn = true
	}
	if st.rows <= sqlLooseRowsMax {
		t.sqlTurn, t.sqlOwn, t.sqlFresh = true, true, true
		return st.db, nil
	}
	if err := st.db.Savepoint(t.req.ctx, "strata_turn"); err != nil {
		return nil, t.a.sqlBroken(err)
	}
	t.sqlTurn, t.sqlFresh = true, true
	return st.db, nil
}

// sqlEnd closes the turn's savepoint: kept when the turn succeeded,
// rolled back when it failed.
func (t *turn) sqlEnd(keep bool) {
	if !t.sqlTurn {
		return
	}
	own := t.sqlOwn
	t.sqlTurn, t.sqlOwn, t.sqlFresh = false, false, false
	st := t.a.sql
	if st == nil || st.broken != nil {
		return
	}
	ctx := context.Background()
	var err error
	switch {
	case own && keep: // the transaction goes on, with the turn's changes pending
	case own:
		err = t.a.sqlUndo(ctx)
	case keep:
		err = st.db.Release(ctx, "strata_turn")
	default:
		if err = st.db.RollbackTo(ctx, "strata_turn"); err != nil {
			// SQLite may have rolled back the whole transaction, savepoint
			// and pending changes with it (a conflict clause of ROLLBACK,
			// a write interrupted at its deadline, a full database): undo
			// as a turn without a savepoint does, from the pending changes.
			err = t.a.sqlUndo(ctx)
		}
	}
	if err != nil {
		t.a.sqlBroken(err)
	}
}

// sqlUndo undoes what the transaction holds beyond the pending changes
// (a failed turn's, which ran without a savepoint): it is rolled back and,
// if changes are pending, begun again with them applied.
func (a *activation) sqlUndo(ctx context.Context) error {
	st := a.sql
	if err := st.db.Rollback(ctx); err != nil {
		return err
	}
	st.inTxn = false
	if len(st.pend) == 0 {
		return nil
	}
	if err := st.db.Begin(ctx); err != nil {
		return err
	}
	st.inTxn = true
	// one Apply, so that runs of changes to one row fold across events
	var chs []log.SQLChange
	for _, p := range st.pend {
		chs = append(chs, p.chs...)
	}
	return st.db.Apply(ctx, chs)
}

// sqlRebuild puts SQLite's transaction back as the turn holds it, after
// SQLite rolled it back whole inside Storage.Transaction (a statement's
// conflict clause of ROLLBACK, a write interrupted at its deadline, a full
// database): the pending changes (sqlUndo), the turn's savepoint unless
// the turn runs in the transaction itself, then from the outermost write
// set in, each open transaction's savepoint and the changes staged in it.
// Rolling back to a savepoint, or ending the turn, then works as it
// would have.
func (t *turn) sqlRebuild(ctx context.Context) error {
	st := t.a.sql
	if err := t.a.sqlUndo(ctx); err != nil {
		return err
	}
	if !st.inTxn {
		if err := st.db.Begin(ctx); err != nil {
			return err
		}
		st.inTxn = true
	}
	if !t.sqlOwn {
		if err := st.db.Savepoint(ctx, "strata_turn"); err != nil {
			return err
		}
	}
	var open []*writeSet // innermost first
	for ws := t.curWS(); ws != nil; ws = ws.parent {
		open = append(open, ws)
	}
	for _, ws := range slices.Backward(open) {
		if ws.savepoint != "" {
			if err := st.db.Savepoint(ctx, ws.savepoint); err != nil {
				return err
			}
		}
		if len(ws.sql) > 0 {
			if err := st.db.Apply(ctx, ws.sql); err != nil {
				return err
			}
		}
	}
	return nil
}

// sqlTxBegin opens a savepoint for Storage.Transaction's write set ws,
// if SQL is in use, and records it in ws.
func (t *turn) sqlTxBegin(ws *writeSet) string {
	if !t.sqlTurn || t.a.sql == nil {
		return ""
	}
	depth := 0
	for w := ws; w.parent != nil; w = w.parent {
		depth++
	}
	name := fmt.Sprintf("strata_tx%d", depth)
	if err := t.a.sql.db.Savepoint(t.req.ctx, name); err != nil {
		t.a.sqlBroken(err)
		return ""
	}
	ws.savepoint = name
	return name
}

// sqlTxEnd closes it; opened says whether the turn had SQL open before.
func (t *turn) sqlTxEnd(name string, hadTurn, keep bool) {
	st := t.a.sql
	if st == nil || st.broken != nil {
		return
	}
	ctx := context.Background()
	var err error
	switch {
	case name != "" && keep:
		err = st.db.Release(ctx, name)
	case name != "":
		if err = st.db.RollbackTo(ctx, name); err != nil {
			// SQLite rolled back its whole transaction (a statement's
			// conflict clause of ROLLBACK, an interrupted write, a full
			// database): build again what the turn still holds.
			err = t.sqlRebuild(ctx)
		}
	case !hadTurn && t.sqlTurn && !keep:
		// SQL was first used inside the failed transaction.
		t.sqlEnd(false)
	}
	if err != nil {
		t.a.sqlBroken(err)
	}
}

// sqlStaged records a staged turn's changes as pending in the transaction.
func (a *activation) sqlStaged(version uint64, chs []log.SQLChange) {
	if len(chs) == 0 || a.sql == nil {
		return
	}
	a.sql.rows += len(chs)
	n := len(a.sql.pend)
	if n > 0 && a.sql.pend[n-1].version == version {
		a.sql.pend[n-1].chs = append(a.sql.pend[n-1].chs, chs...)
		return
	}
	a.sql.pend = append(a.sql.pend, sqlPend{version: version, chs: chs})
}

// sqlAcked learns that an event is in the log and settles the file if no
// turn is running (inTurn: acked from Sync inside a turn).
func (a *activation) sqlAcked(version, seq uint64, inTurn bool) {
	st := a.sql
	if st == nil || st.broken != nil {
		return
	}
	st.ackV, st.ackS = version, seq
	if !inTurn {
		a.sqlSettle(false)
	}
}

// sqlSettle commits what the log has acknowledged (step 3) once
// sqlCommitEvents events wait in the transaction, or now if force.
func (a *activation) sqlSettle(force bool) {
	st := a.sql
	if st == nil || st.broken != nil || !st.inTxn {
		return
	}
	ctx := a.rt.appendCtx
	newer := 0
	for _, p := range st.pend {
		if p.version > st.ackV {
			newer++
		}
	}
	switch {
	case newer == 0 && !force && len(st.pend) < sqlCommitEvents:
		// The next turns' changes join the transaction: a commit (the
		// WAL's frames, the applied position, a new transaction) is
		// paid once per sqlCommitEvents events, not per event.
	case newer == 0:
		if err := st.db.SetApplied(ctx, st.ackV, st.ackS); err != nil {
			a.sqlBroken(err)
			return
		}
		if err := st.db.Commit(ctx); err != nil {
			a.sqlBroken(err)
			return
		}
		st.inTxn, st.pend, st.rows = false, nil, 0
		st.fileV, st.fileS = st.ackV, st.ackS
	case len(st.pend) > sqlPendMax:
		if err := a.sqlRebuildTxn(ctx); err != nil {
			a.sqlBroken(err)
		}
	}
}

func (a *activation) sqlRebuildTxn(ctx context.Context) error {
	st := a.sql
	if err := st.db.Rollback(ctx); err != nil {
		return err
	}
	st.inTxn = false
	if err := st.db.Begin(ctx); err != nil {
		return err
	}
	var rest []sqlPend
	rows := 0
	for _, p := range st.pend {
		if p.version > st.ackV {
			rest = append(rest, p)
			rows += len(p.chs)
			continue
		}
		if err := st.db.Apply(ctx, p.chs); err != nil {
			st.db.Rollback(ctx)
			return err
		}
	}
	if err := st.db.SetApplied(ctx, st.ackV, st.ackS); err != nil {
		st.db.Rollback(ctx)
		return err
	}
	if err := st.db.Commit(ctx); err != nil {
		return err
	}
	st.fileV, st.fileS = st.ackV, st.ackS
	if err := st.db.Begin(ctx); err != nil {
		return err
	}
	st.inTxn = true
	for _, p := range rest {
		if err := st.db.Apply(ctx, p.chs); err != nil {
			return err
		}
	}
	st.pend, st.rows = rest, rows
	return nil
}

// sqlBroken marks the database unusable for the rest of the activation
// (its state is unknown); the next activation catches up from the log.
func (a *activation) sqlBroken(err error) error {
	if a.sql != nil && a.sql.broken == nil {
		a.sql.broken = fmt.Errorf("%w: sql %s/%s: %w", ErrUnavailable, a.class.name, a.id, err)
		a.rt.logger.Warn("SQL database failed; the activation will reset", "class", a.class.name, "id", a.id, "err", err)
		a.broken = a.sql.broken
	}
	if a.sql != nil {
		return a.sql.broken
	}
	return err
}

// sqlClose ends the database with the activation: what the log has is
// committed, anything else rolled back (step 4).
func (a *activation) sqlClose() {
	st := a.sql
	if st == nil {
		return
	}
	a.sql = nil
	ctx := context.Background()
	if st.broken == nil {
		if st.inTxn {
			a.sql = st
			a.sqlSettle(true)
			a.sql = nil
		}
		if st.inTxn {
			st.db.Rollback(ctx)
		}
	}
	if err := st.db.Close(); err != nil {
		a.rt.logger.Warn("closing SQL database", "class", a.class.name, "id", a.id, "err", err)
	}
}
