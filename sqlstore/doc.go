// Package sqlstore is an object's SQL database: SQLite (modernc.org/sqlite,
// pure Go) behind a capture of row changes, so that what a turn changed can
// be written into its event and replayed exactly. It is the only package
// that imports SQLite.
//
// Invariants:
//  1. Every user statement runs inside the caller's write transaction,
//     in a savepoint (Query's own, or one the caller of QueryIn holds and
//     rolls back to, or the transaction itself); the capture sees each row it inserts, updates or
//     deletes (the preupdate hook, by rowid, with old and new values) and
//     each schema statement (the authorizer marks DDL while preparing).
//  2. What would not replay is refused before it runs: triggers, virtual
//     and temporary tables, WITHOUT ROWID tables, ATTACH, load_extension,
//     transaction statements (a turn is the transaction), PRAGMAs that set
//     anything, and a schema statement that also changes rows
//     (CREATE TABLE … AS SELECT).
//  3. Apply replays changes with the capture off; an update or delete that
//     finds no row means the database is not the one the changes were
//     captured on, and is an error, never a silent skip.
//  4. The database stores the version (and stream sequence) of the last
//     event it applied in the same transaction as the rows (table
//     _strata_meta), so applying is idempotent across crashes.
package sqlstore
