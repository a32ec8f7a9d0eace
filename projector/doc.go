// Package projector applies acknowledged events to a Badger snapshot.
//
// The snapshot is derived data: the JetStream log is the truth, and the
// snapshot can always be rebuilt from it (objects.Rebuild). It exists so
// that an activation does not replay an object's whole history to load, and
// so that reads of state that is not in memory are local.
//
// # Invariants
//
//  1. An object's meta (applied version, stream sequence, chain hash, name,
//     update time) is written in the same Badger transaction as the last of
//     the state writes of the event it names. So whatever Badger recovers
//     after a crash, the meta never claims an event whose writes are
//     missing, and catching up from Meta.Seq+1 restores the object.
//  2. Apply is idempotent: an event whose version is ≤ the applied version
//     is skipped. Replaying any suffix of the log is harmless.
//  3. Events are applied along the object's hash chain, without gaps: an
//     event whose version is not the applied version + 1 is not applied as
//     it is. With Config.Log the missing events are read from the log and
//     applied first, and the objects of a batch that failed to commit are
//     read again until they heal (heal.go); without it the event is logged
//     at Error and skipped, and the object catches up from the log when it
//     next loads. An event whose PrevHash is not the chain hash of the
//     applied version (a forged event) is never applied: it is logged at
//     Error and skipped, and ApplyChecked reports it.
//  4. Transactions end at event boundaries. Many events (of many objects)
//     share one transaction, up to Config.BatchMax. When Badger reports
//     ErrTxnTooBig, the transaction is rebuilt without the event that did
//     not fit and committed, and that event starts the next transaction.
//     Only an event too large for an empty transaction is split across
//     transactions, with its meta in the last one. That is safe because
//     every op is an absolute overwrite (put sets a value, delete and
//     delete-all remove, set-alarm sets a due time): applying the event
//     again over any prefix of its own writes yields the same state, and
//     until its meta is committed the event counts as not applied (1, 2).
//     Badger's WriteBatch is not used because it commits whenever it
//     fills, at any entry, which would break (1) for every event.
//  5. OnApplied is called only after the transaction holding the reported
//     metas has committed, so an activation never trusts the snapshot for
//     an event that is not in it.
//
// Being the snapshot's only writer, the apply path keeps a bounded copy
// of the metas it committed (metacache.go) and reads Badger only for an
// object it does not hold, so a staged event costs no Badger get.
//
// Badger runs without fsync of its own (the log is fsynced; a lost tail of
// the snapshot is caught up from it) and with a small-memory profile. Values
// are far below Badger's value threshold, so they live in the LSM tree and
// the value log needs no garbage collection.
//
// # Key layout
//
// Class names are [a-z][a-z0-9-]{0,62}, so \x00 cannot occur in one and
// safely ends the class; object ids are exactly 32 bytes, so what follows
// the id is the storage key or alarm name, in byte order:
//
//	d<class>\x00<id 32 bytes><key>   state: the value
//	m<class>\x00<id 32 bytes>        meta: see encodeMeta
//	a<class>\x00<id 32 bytes><name>  pending alarm: due time, Unix ns, 8 bytes big-endian
//	i<class>\x00<id 32 bytes><key>   a keyed turn's record (idem.go)
//	x<time><class>\x00<id><key>      its expiry entry, in time order (idem.go)
//
// One object's keys of each kind are contiguous, so List and DeleteAll are
// range scans and DeleteAll cannot reach the meta or the alarms.
//
// # Goroutines
//
// Open starts one apply goroutine, owned by the Projector; Close stops it
// after it has applied what was submitted, then closes Badger. Apply, the
// synchronous entry point, runs on its caller's goroutine and is serialized
// with the apply goroutine, so Badger only ever has one writer and its
// conflict detection is switched off.
package projector
