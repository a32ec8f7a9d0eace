package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/strata-objects/strata/log"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Limits, as in Durable Objects where they exist.
const (
	StatementBytesMax = 100 << 10 // one query's text
	ResultBytesMax    = 32 << 20  // one query's materialized rows
	DefaultSizeMax    = 1 << 30   // a database's bytes, unless the class says otherwise
	pageBytes         = 4096
)

// Sentinel errors callers branch on. ErrSQL wraps SQLite's own message for
// a statement that failed (a 400 at the edge); ErrRefused a statement that
// would break replay or escape the object.
var (
	ErrSQL     = errors.New("SQL error")
	ErrRefused = errors.New("SQL statement refused")
	ErrReplay  = errors.New("SQL replay diverged")
)

// metaTable holds the applied position; user statements may not touch it.
const metaTable = "_strata_meta"

// Config of one database.
type Config struct {
	// SizeMax bounds the database's bytes (rounded down to pages); a write
	// past it fails with SQLite's "database or disk is full". Zero means
	// DefaultSizeMax.
	SizeMax int64
}

// DB is one object's SQL database on one connection. It is not safe for
// concurrent use: its owner (the activation's goroutine) serializes calls.
type DB struct {
	db   *sql.DB
	conn *sql.Conn
	path string

	capturing bool
	changes   []log.SQLChange
	ddl       bool     // the statement being prepared changes the schema
	created   []string // tables it creates
	refusal   string   // why the statement being prepared is refused
	cols      map[string][]string
	stmts     map[string]*sql.Stmt // Apply's, by op and table
	user      map[string]*userStmt // Query's that change no schema, by text
	internal  map[string]rawStmt   // exec's, by text
	written   int64                // rows the last Query wrote
	target    string               // the table the statement being prepared writes
	targets   int                  // how many tables it writes (counted per write action)

	// returningAsWritten runs every RETURNING clause in SQLite, as
	// written (tests compare it with reading the rows from the capture).
	returningAsWritten bool
	hookErr            error
}

// Open opens (creating) the database at path; "" opens a private
// in-memory database (time travel, tests).
func Open(ctx context.Context, path string, cfg Config) (*DB, error) {
	if path != "" {
		if err := createFromImage(path); err != nil {
			return nil, fmt.Errorf("open sql %s: %w", path, err)
		}
	}
	return openFile(ctx, path, cfg)
}

func openFile(ctx context.Context, path string, cfg Config) (*DB, error) {
	if cfg.SizeMax <= 0 {
		cfg.SizeMax = DefaultSizeMax
	}
	dsn := "file::memory:"
	if path != "" {
		dsn = "file:" + path
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sql %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	d := &DB{db: db, path: path, cols: map[string][]string{}, stmts: map[string]*sql.Stmt{}, user: map[string]*userStmt{}, internal: map[string]rawStmt{}}
	if err := d.init(ctx, cfg); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sql %s: %w", path, err)
	}
	return d, nil
}

func (d *DB) init(ctx context.Context, cfg Config) error {
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return err
	}
	d.conn = conn
	// The file is derived from the log and, like Badger (DESIGN.md,
	// "Durability"), written without fsync: a process crash loses
	// nothing the OS has; what a machine crash loses is caught up from
	// the log (the stored version says where). synchronous=NORMAL would
	// fsync at each WAL checkpoint, also when an evicted object's
	// database closes, which made W3-sql (many objects, evictions) an
	// order of magnitude slower.
	// synchronous=OFF comes first: switching a new file to WAL under the
	// default (FULL) fsyncs it.
	//
	// locking_mode=EXCLUSIVE: the activation's connection is the file's
	// only one on the node (the activation owns it; it closes before the
	// next activation of the object opens it), so it takes the file's
	// lock once and keeps it: no fcntl lock and unlock around every
	// transaction, and, set before WAL mode, no shared-memory index file
	// (the WAL index lives in the connection's heap). A second opener
	// gets "database is locked" rather than a view of a file being
	// written.
	pragmas := []string{
		"PRAGMA synchronous=OFF",
		"PRAGMA locking_mode=EXCLUSIVE",
		"PRAGMA journal_mode=WAL",
		fmt.Sprintf("PRAGMA page_size=%d", pageBytes),
		"PRAGMA foreign_keys=OFF",
		"PRAGMA trusted_schema=OFF",
		fmt.Sprintf("PRAGMA max_page_count=%d", cfg.SizeMax/pageBytes),
		"CREATE TABLE IF NOT EXISTS " + metaTable + "(k INTEGER PRIMARY KEY, version INTEGER NOT NULL, seq INTEGER NOT NULL)",
	}
	for _, p := range pragmas {
		if _, err := conn.ExecContext(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return conn.Raw(func(dc any) error {
		h, ok := dc.(sqlite.HookRegisterer)
		a, ok2 := dc.(sqlite.AuthorizerRegisterer)
		if !ok || !ok2 {
			return errors.New("driver has no hooks")
		}
		h.RegisterPreUpdateHook(d.preUpdate)
		return a.RegisterAuthorizer(d.authorize)
	})
}

// createFromImage writes a new database file from newFileImage, so that
// the first activation of an object does not pay for switching a new file
// to WAL (a rollback journal created and deleted) and creating the meta
// table. A file that exists is left as it is.
func createFromImage(path string) error {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return nil // exists, or Open reports what is wrong with it
	}
	img, err := newFileImage(filepath.Dir(path))
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(img); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// newFileImage is the bytes of a new, empty database as Open leaves it
// (WAL mode in its header, the page size, the meta table), made once per
// process by opening a database in a temporary folder inside dir (the
// data folder: a FROM scratch image has no /tmp) and closing it.
func newFileImage(dir string) ([]byte, error) {
	fileImage.Do(func() {
		tmp, err := os.MkdirTemp(dir, ".strata-sql-image")
		if err != nil {
			fileImage.err = err
			return
		}
		defer os.RemoveAll(tmp)
		path := filepath.Join(tmp, "new.db")
		d, err := openFile(context.Background(), path, Config{})
		if err == nil {
			err = d.Close()
		}
		if err == nil {
			fileImage.img, err = os.ReadFile(path)
		}
		fileImage.err = err
	})
	return fileImage.img, fileImage.err
}

var fileImage struct {
	sync.Once
	img []byte
	err error
}

// Close closes the connection; an open transaction is rolled back.
func (d *DB) Close() error {
	d.closeStmts()
	d.raw(func(rawConn) error {
		for _, s := range d.internal {
			s.Close()
		}
		return nil
	})
	d.conn.Close()
	return d.db.Close()
}

// Path is the database's file, "" in memory.
func (d *DB) Path() string { return d.path }

// Applied returns the version and stream sequence of the last event whose
// changes the committed database holds.
func (d *DB) Applied(ctx context.Context) (version, seq uint64, err error) {
	err = d.conn.QueryRowContext(ctx, "SELECT version, seq FROM "+metaTable+" WHERE k=1").Scan(&version, &seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, nil
	}
	return version, seq, err
}

// SetApplied records the applied position in the current transaction.
func (d *DB) SetApplied(ctx context.Context, version, seq uint64) error {
	return d.exec(ctx, "INSERT INTO "+metaTable+"(k,version,seq) VALUES(1,?,?) ON CONFLICT(k) DO UPDATE SET version=excluded.version, seq=excluded.seq", int64(version), int64(seq))
}

// internalStmtsMax bounds the cached internal statements (transaction
// control with a few savepoint names, and SetApplied's upsert).
const internalStmtsMax = 32

// exec runs an internal statement, prepared once per connection: every
// turn runs several (BEGIN, SAVEPOINT, RELEASE, the applied position,
// COMMIT), and parsing them again each time was a tenth of W3-sql's CPU
// (docs/benchmarks.md). SQLite prepares a statement again by itself when
// the schema changes.
//
// It runs to its end whatever ctx says: these statements are short, and
// one interrupted half way (a RELEASE, a COMMIT) would leave the
// transaction in a state its owner did not choose. With a context that
// can end, the driver starts a goroutine per statement to interrupt it,
// which was 40 % of these statements' CPU under W2-sql (issue 17).
func (d *DB) exec(ctx context.Context, q string, args ...any) error {
	ctx = context.WithoutCancel(ctx)
	nv, err := namedValues(args)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	err = d.raw(func(c rawConn) error {
		st, ok := d.internal[q]
		if !ok {
			var err error
			if st, err = prepareRaw(ctx, c, q); err != nil {
				return err
			}
			if len(d.internal) < internalStmtsMax {
				d.internal[q] = st
			} else {
				defer st.Close()
			}
		}
		_, err := st.ExecContext(ctx, nv)
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	return nil
}

// Begin starts the write transaction that turns run in.
func (d *DB) Begin(ctx context.Context) error { return d.exec(ctx, "BEGIN IMMEDIATE") }

// Commit commits the write transaction.
func (d *DB) Commit(ctx context.Context) error { return d.exec(ctx, "COMMIT") }

// Rollback abandons the write transaction, if any.
func (d *DB) Rollback(ctx context.Context) error {
	if err := d.exec(ctx, "ROLLBACK"); err != nil && !strings.Contains(err.Error(), "no transaction is active") {
		return err
	}
	d.cols = map[string][]string{}
	d.closeStmts()
	return nil
}

// Savepoint opens a named savepoint; name is internal, never user input.
func (d *DB) Savepoint(ctx context.Context, name string) error {
	return d.exec(ctx, "SAVEPOINT "+name)
}

// Release keeps a savepoint's changes in the enclosing transaction.
func (d *DB) Release(ctx context.Context, name string) error {
	return d.exec(ctx, "RELEASE "+name)
}

// RollbackTo undoes a savepoint's changes and closes it.
func (d *DB) RollbackTo(ctx context.Context, name string) error {
	if err := d.exec(ctx, "ROLLBACK TO "+name); err != nil {
		return err
	}
	d.cols = map[string][]string{} // the schema may have changed back
	d.closeStmts()
	return d.exec(ctx, "RELEASE "+name)
}

// closeStmts forgets the prepared statements that depend on the schema,
// when it may have changed (a schema statement, a rollback).
func (d *DB) closeStmts() {
	for k, s := range d.stmts {
		s.Close()
		delete(d.stmts, k)
	}
	if len(d.user) == 0 {
		return
	}
	d.raw(func(rawConn) error {
		for k, s := range d.user {
			s.st.Close()
			delete(d.user, k)
		}
		return nil
	})
}

// Size is the database's bytes (pages in use times page size), as
// Durable Objects' databaseSize.
func (d *DB) Size(ctx context.Context) (int64, error) {
	var pages, size int64
	if err := d.conn.QueryRowContext(ctx, "PRAGMA page_count").Scan(&pages); err != nil {
		return 0, err
	}
	if err := d.conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&size); err != nil {
		return 0, err
	}
	return pages * size, nil
}

// sqliteErr wraps an error from SQLite for a user statement.
func sqliteErr(err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		msg := se.Error()
		if se.Code() == sqlite3.SQLITE_AUTH {
			return fmt.Errorf("%w: %s", ErrRefused, msg)
		}
		return fmt.Errorf("%w: %s", ErrSQL, msg)
	}
	return err
}
