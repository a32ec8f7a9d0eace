package log

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Checkpoints (docs/design-notes.md, "Checkpoints"): an object's full state
// at one version, stored in shard n's stream STRATA_CKPT_<n>, apart from the
// log. A checkpoint is chunk messages on strata.<n>.ckpt.<class>.<id>.d
// followed by one small manifest on strata.<n>.ckpt.<class>.<id>.m that
// names the chunks by stream sequence and carries the version, the log
// sequence and the chain hash at that version, and the SHA-256 of the
// chunks. A checkpoint without its manifest does not exist. The stream is
// append-only (no deletes, no purges): checkpoints anchor the audit of a
// class whose old events were dropped.

// Checkpoint is an object's state after one event.
type Checkpoint struct {
	Class   string
	ID      ID
	Name    string
	Version uint64 // the last event included
	Seq     uint64 // that event's log stream sequence
	Time    int64  // that event's time, Unix ns
	Hash    Hash   // that event's chain hash (Record.Hash)
	Keys    map[string][]byte
	Alarms  map[string]int64 // alarm name -> due time, Unix ns
	// Keyed are the records of keyed turns (Cause.IdemKey with an
	// Outcome) in the events since the checkpoint before this one that a
	// retry may still ask for: a node that loads the object from a
	// checkpoint skips the events that hold them, and reads them from the
	// checkpoints of the window instead (LoadKeyed).
	Keyed []KeyedTurn
	// SQL is the object's SQL database as the changes that build it from
	// an empty one (sqlstore.DB.Snapshot): schema statements in creation
	// order, then every row as an insert. HasSQL says the checkpoint
	// carries it (an object without SQL has none and HasSQL true);
	// checkpoints written before they carried SQL have HasSQL false, and
	// SQL state must come from before them. LoadCheckpoint leaves SQL
	// empty: LoadSQL reads it.
	SQL    []SQLChange
	HasSQL bool
	// Outbox are the object's own durable messages pending or dead at
	// Version (its Sends minus its Settles), in send order: a node that
	// loads from the checkpoint skips the events that say so.
	Outbox []OutboxMessage
}

// OutboxMessage is one of an object's messages in a checkpoint: where it
// was sent (event version, turn, index in Sends), the message, and, for a
// dead letter, its error.
type OutboxMessage struct {
	Version uint64  `cbor:"1,keyasint"`
	Turn    int     `cbor:"2,keyasint,omitempty"`
	Index   int     `cbor:"3,keyasint,omitempty"`
	Message Message `cbor:"4,keyasint"`
	Dead    string  `cbor:"5,keyasint,omitempty"`
}

// KeyedTurn is the record of one keyed turn: its event's time and cause.
type KeyedTurn struct {
	Time  int64 `cbor:"1,keyasint"`
	Cause Cause `cbor:"2,keyasint"`
}

// CheckpointInfo is a checkpoint's manifest: everything but the state.
type CheckpointInfo struct {
	Format  uint8  `cbor:"1,keyasint"`
	Class   string `cbor:"2,keyasint"`
	ID      ID     `cbor:"3,keyasint"`
	Name    string `cbor:"4,keyasint,omitempty"`
	Version uint64 `cbor:"5,keyasint"`
	Seq     uint64 `cbor:"6,keyasint"`
	Time    int64  `cbor:"7,keyasint"`
	Hash    Hash   `cbor:"8,keyasint"`
	// Chunks are the stream sequences of the chunk messages, in order;
	// StateHash is SHA-256 over their bytes in that order.
	Chunks    []uint64     `cbor:"9,keyasint"`
	StateHash Hash         `cbor:"10,keyasint"`
	Keys      uint64       `cbor:"11,keyasint"`
	Alarms    []alarmEntry `cbor:"12,keyasint,omitempty"`
	// KeyedChunks hold the keyed turns' records (Checkpoint.Keyed), Keyed
	// of them; KeyedHash is SHA-256 over their bytes in order, so they can
	// be read without the state. Checkpoints written before they existed
	// have none.
	KeyedChunks []uint64 `cbor:"13,keyasint,omitempty"`
	Keyed       uint64   `cbor:"14,keyasint,omitempty"`
	KeyedHash   Hash     `cbor:"15,keyasint,omitempty"`
	// SQLChunks hold the SQL state (Checkpoint.SQL), SQLChanges changes;
	// SQLHash is SHA-256 over their bytes in order. HasSQL is false in
	// checkpoints written before they carried SQL state.
	SQLChunks  []uint64 `cbor:"16,keyasint,omitempty"`
	SQLChanges uint64   `cbor:"17,keyasint,omitempty"`
	SQLHash    Hash     `cbor:"18,keyasint,omitempty"`
	HasSQL     bool     `cbor:"19,keyasint,omitempty"`
	// OutboxChunks hold Checkpoint.Outbox, Outbox of them, OutboxHash
	// SHA-256 over their bytes in order. Checkpoints written before
	// durable messages have none.
	OutboxChunks []uint64 `cbor:"20,keyasint,omitempty"`
	Outbox       uint64   `cbor:"21,keyasint,omitempty"`
	OutboxHash   Hash     `cbor:"22,keyasint,omitempty"`
}

type alarmEntry struct {
	Name string `cbor:"1,keyasint"`
	At   int64  `cbor:"2,keyasint"`
}

type keyEntry struct {
	Key   string `cbor:"1,keyasint"`
	Value []byte `cbor:"2,keyasint,omitempty"`
}

// ErrBadCheckpoint: a stored checkpoint does not decode or does not match
// its manifest.
var ErrBadCheckpoint = errors.New("bad checkpoint")

const (
	ckptSubjectsFmt = "strata.%d.ckpt.>"
	// ckptChunkBytes bounds one chunk's payload; a key (2 KiB) and value
	// (128 KiB) always fit.
	ckptChunkBytes   = 512 << 10
	ckptChunkEntries = 4096 // below the decoder's array bound
)

// CkptStream names shard n's checkpoint stream.
func CkptStream(n int) string { return "STRATA_CKPT_" + strconv.Itoa(n) }

func ckptSubject(shard int, class string, id ID, kind string) string {
	return "strata." + strconv.Itoa(shard) + ".ckpt." + class + "." + id.String() + "." + kind
}

// ckptStreamConfig: append-only like the log, and never the same stream:
// the log's config (purges for retaining classes) is not the checkpoints'.
func (l *Log) ckptStreamConfig(n int, meta map[string]string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              CkptStream(n),
		Description:       "Strata checkpoints: object state every N events, derived from the log",
		Subjects:          []string{fmt.Sprintf(ckptSubjectsFmt, n)},
		Storage:           jetstream.FileStorage,
		Replicas:          l.cfg.Replicas,
		Retention:         jetstream.LimitsPolicy,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgsPerSubject: -1,
		Duplicates:        duplicateWindow,
		AllowDirect:       true,
		DenyDelete:        true,
		DenyPurge:         true,
		Metadata:          meta,
	}
}

// encodeChunks splits the state into chunks of sorted key entries.
func encodeChunks(keys map[string][]byte) ([][]byte, error) {
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	var chunks [][]byte
	var cur []keyEntry
	size := 0
	flush := func() error {
		b, err := encMode.Marshal(cur)
		if err != nil {
			return fmt.Errorf("encode checkpoint chunk: %w", err)
		}
		chunks = append(chunks, b)
		cur, size = cur[:0], 0
		return nil
	}
	for _, k := range names {
		n := len(k) + len(keys[k]) + 16
		if len(cur) > 0 && (size+n > ckptChunkBytes || len(cur) == ckptChunkEntries) {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		cur = append(cur, keyEntry{Key: k, Value: keys[k]})
		size += n
	}
	if len(cur) > 0 || len(chunks) == 0 {
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return chunks, nil
}

// encodeKeyedChunks splits keyed turns' records into chunks.
func encodeKeyedChunks(keyed []KeyedTurn) ([][]byte, error) {
	for _, k := range keyed {
		if err := k.Cause.validateIdem(); err != nil || k.Cause.IdemKey == "" || k.Cause.Outcome == nil {
			return nil, fmt.Errorf("encode checkpoint record %q: not a keyed turn's record (%v)", k.Cause.IdemKey, err)
		}
	}
	return encodeList("records", keyed, func(k KeyedTurn) int {
		return len(k.Cause.IdemKey) + len(k.Cause.Method) + len(k.Cause.Outcome.Body) + 256
	})
}

// encodeSQLChunks splits a checkpoint's SQL state into chunks.
func encodeSQLChunks(chs []SQLChange) ([][]byte, error) {
	for i := range chs {
		if err := chs[i].normalize(); err != nil {
			return nil, fmt.Errorf("encode checkpoint SQL change %d: %w", i, err)
		}
	}
	return encodeList("SQL", chs, sqlChangeBytes)
}

// sqlChangeBytes estimates a change's encoded size.
func sqlChangeBytes(c SQLChange) int {
	n := 16 + len(c.Table) + len(c.Stmt)
	for _, vs := range [][]any{c.Old, c.New} {
		for _, v := range vs {
			n += 9
			switch x := v.(type) {
			case string:
				n += len(x)
			case []byte:
				n += len(x)
			}
		}
	}
	return n
}

// encodeList splits items into CBOR arrays of at most ckptChunkBytes (by
// size's estimate; one larger item gets a chunk of its own) and
// ckptChunkEntries items.
func encodeList[T any](what string, items []T, size func(T) int) ([][]byte, error) {
	var chunks [][]byte
	var cur []T
	bytes := 0
	flush := func() error {
		b, err := encMode.Marshal(cur)
		if err != nil {
			return fmt.Errorf("encode checkpoint %s: %w", what, err)
		}
		chunks = append(chunks, b)
		cur, bytes = cur[:0], 0
		return nil
	}
	for _, it := range items {
		n := size(it)
		if len(cur) > 0 && (bytes+n > ckptChunkBytes || len(cur) == ckptChunkEntries) {
			if err := flush(); err != nil {
				return nil, err
			}
		}
		cur = append(cur, it)
		bytes += n
	}
	if len(cur) > 0 {
		if err := flush(); err != nil {
			return nil, err
		}
	}
	return chunks, nil
}

// WriteCheckpoint stores ck unless the object already has a checkpoint at
// its version or later. It is idempotent: chunks carry message ids from
// object, version and index, and the manifest expects the manifest subject
// to be where it was read, so two writers of one checkpoint store one.
func (l *Log) WriteCheckpoint(ctx context.Context, ck *Checkpoint) error {
	if l.closed() {
		return ErrClosed
	}
	shard := l.ShardOf(ck.ID)
	stream, msubj := CkptStream(shard), ckptSubject(shard, ck.Class, ck.ID, "m")
	var expect uint64
	switch last, err := l.currentLastMsg(ctx, stream, msubj); {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return fmt.Errorf("log: checkpoint %s v%d: %w", ck.ID, ck.Version, err)
	default:
		info, err := decodeInfo(stream, msubj, last)
		if err != nil {
			return err
		}
		if info.Version >= ck.Version {
			return nil
		}
		expect = last.seq
	}
	chunks, err := encodeChunks(ck.Keys)
	if err != nil {
		return err
	}
	keyedChunks, err := encodeKeyedChunks(ck.Keyed)
	if err != nil {
		return err
	}
	var sqlChunks [][]byte
	if ck.HasSQL {
		if sqlChunks, err = encodeSQLChunks(ck.SQL); err != nil {
			return err
		}
	}
	for _, m := range ck.Outbox {
		if err := checkOutbox(&m); err != nil {
			return fmt.Errorf("encode checkpoint: %w", err)
		}
	}
	outboxChunks, err := encodeList("messages", ck.Outbox, func(m OutboxMessage) int {
		return len(m.Message.Class) + len(m.Message.Method) + len(m.Message.Reply) + len(m.Message.Body) + len(m.Dead) + 128
	})
	if err != nil {
		return err
	}
	info := CheckpointInfo{Format: FormatVersion, Class: ck.Class, ID: ck.ID, Name: ck.Name, Version: ck.Version,
		Seq: ck.Seq, Time: ck.Time, Hash: ck.Hash, Keys: uint64(len(ck.Keys)), Keyed: uint64(len(ck.Keyed)),
		HasSQL: ck.HasSQL, SQLChanges: uint64(len(ck.SQL)), Outbox: uint64(len(ck.Outbox))}
	for name, at := range ck.Alarms {
		info.Alarms = append(info.Alarms, alarmEntry{Name: name, At: at})
	}
	sort.Slice(info.Alarms, func(i, j int) bool { return info.Alarms[i].Name < info.Alarms[j].Name })
	sum, keyedSum, sqlSum, outboxSum := sha256.New(), sha256.New(), sha256.New(), sha256.New()
	dsubj := ckptSubject(shard, ck.Class, ck.ID, "d")
	// Message ids name the class too: the same id is reachable under
	// every class, and the duplicate window is per stream.
	prefix := objectTail(ck.Class, ck.ID) + "." + strconv.FormatUint(ck.Version, 10) + "."
	all := append(append(append(chunks, keyedChunks...), sqlChunks...), outboxChunks...)
	for i, c := range all {
		m := &nats.Msg{Subject: dsubj, Data: c, Header: nats.Header{hdrMsgID: []string{prefix + strconv.Itoa(i)}}}
		ack, err := l.js.PublishMsg(ctx, m)
		if err != nil {
			return fmt.Errorf("log: checkpoint %s v%d chunk %d: %w", ck.ID, ck.Version, i, err)
		}
		switch {
		case i < len(chunks):
			info.Chunks = append(info.Chunks, ack.Sequence)
			sum.Write(c)
		case i < len(chunks)+len(keyedChunks):
			info.KeyedChunks = append(info.KeyedChunks, ack.Sequence)
			keyedSum.Write(c)
		case i < len(chunks)+len(keyedChunks)+len(sqlChunks):
			info.SQLChunks = append(info.SQLChunks, ack.Sequence)
			sqlSum.Write(c)
		default:
			info.OutboxChunks = append(info.OutboxChunks, ack.Sequence)
			outboxSum.Write(c)
		}
	}
	sum.Sum(info.StateHash[:0])
	if len(keyedChunks) > 0 {
		keyedSum.Sum(info.KeyedHash[:0])
	}
	if len(sqlChunks) > 0 {
		sqlSum.Sum(info.SQLHash[:0])
	}
	if len(outboxChunks) > 0 {
		outboxSum.Sum(info.OutboxHash[:0])
	}
	b, err := encMode.Marshal(info)
	if err != nil {
		return fmt.Errorf("log: checkpoint %s v%d manifest: %w", ck.ID, ck.Version, err)
	}
	m := &nats.Msg{Subject: msubj, Data: b, Header: nats.Header{
		hdrMsgID:      []string{prefix + "m"},
		hdrExpectSubj: []string{strconv.FormatUint(expect, 10)},
	}}
	if _, err := l.js.PublishMsg(ctx, m); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeWrongLastSeq || apiErr.ErrorCode == errCodeWrongLastSeqConst) {
			return nil // another writer stored a checkpoint meanwhile (or ours landed before)
		}
		return fmt.Errorf("log: checkpoint %s v%d manifest: %w", ck.ID, ck.Version, err)
	}
	return nil
}

func decodeInfo(stream, subj string, m storedMsg) (CheckpointInfo, error) {
	var info CheckpointInfo
	if err := decMode.Unmarshal(m.data, &info); err != nil {
		return info, fmt.Errorf("log: %s sequence %d: %w: %w", stream, m.seq, ErrBadCheckpoint, err)
	}
	if info.Format != FormatVersion || m.subj != subj && subj != "" || info.Version == 0 {
		return info, fmt.Errorf("log: %s sequence %d: %w: format %d, version %d on %s", stream, m.seq, ErrBadCheckpoint, info.Format, info.Version, m.subj)
	}
	return info, nil
}

// LastCheckpoint is the newest checkpoint's manifest, or ErrNotFound.
func (l *Log) LastCheckpoint(ctx context.Context, class string, id ID) (CheckpointInfo, error) {
	if l.closed() {
		return CheckpointInfo{}, ErrClosed
	}
	shard := l.ShardOf(id)
	stream, msubj := CkptStream(shard), ckptSubject(shard, class, id, "m")
	m, err := l.currentLastMsg(ctx, stream, msubj)
	if err != nil {
		return CheckpointInfo{}, err
	}
	info, err := decodeInfo(stream, msubj, m)
	if err == nil && (info.Class != class || info.ID != id) {
		err = fmt.Errorf("log: %s sequence %d: %w: checkpoint of %s/%s on %s", stream, m.seq, ErrBadCheckpoint, info.Class, info.ID, msubj)
	}
	return info, err
}

// Checkpoints calls fn with the manifest of each of the object's
// checkpoints, oldest first.
func (l *Log) Checkpoints(ctx context.Context, class string, id ID, fn func(CheckpointInfo) error) error {
	shard := l.ShardOf(id)
	stream, msubj := CkptStream(shard), ckptSubject(shard, class, id, "m")
	st, err := l.streamState(ctx, shard, stream)
	if err != nil {
		return err
	}
	return l.readSubject(ctx, stream, msubj, 1, st.LastSeq, func(m storedMsg) error {
		info, err := decodeInfo(stream, msubj, m)
		if err != nil {
			return err
		}
		return fn(info)
	})
}

// CheckpointBefore is the manifest of the newest checkpoint that keep
// accepts, or ErrNotFound. Versions grow with time, so keep may be any
// monotone test (at or before a version, at or before a time).
func (l *Log) CheckpointBefore(ctx context.Context, class string, id ID, keep func(CheckpointInfo) bool) (CheckpointInfo, error) {
	var best CheckpointInfo
	err := l.Checkpoints(ctx, class, id, func(info CheckpointInfo) error {
		if keep(info) && info.Version > best.Version {
			best = info
		}
		return nil
	})
	if err != nil {
		return CheckpointInfo{}, err
	}
	if best.Version == 0 {
		return CheckpointInfo{}, ErrNotFound
	}
	return best, nil
}

// LoadCheckpoint reads a checkpoint's state and checks it against its
// manifest.
func (l *Log) LoadCheckpoint(ctx context.Context, info CheckpointInfo) (*Checkpoint, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	ck := &Checkpoint{Class: info.Class, ID: info.ID, Name: info.Name, Version: info.Version, Seq: info.Seq,
		Time: info.Time, Hash: info.Hash, HasSQL: info.HasSQL, Keys: make(map[string][]byte, int(min(info.Keys, 1<<16))), Alarms: map[string]int64{}}
	for _, a := range info.Alarms {
		ck.Alarms[a.Name] = a.At
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("log: checkpoint %s/%s v%d: %w: %s", info.Class, info.ID, info.Version, ErrBadCheckpoint, fmt.Sprintf(format, args...))
	}
	sum := sha256.New()
	for _, seq := range info.Chunks {
		data, err := l.chunkAt(ctx, info, seq)
		if err != nil {
			return nil, err
		}
		sum.Write(data)
		var entries []keyEntry
		if err := decMode.Unmarshal(data, &entries); err != nil {
			return nil, bad("chunk %d: %v", seq, err)
		}
		for _, e := range entries {
			if e.Value == nil {
				e.Value = []byte{}
			}
			ck.Keys[e.Key] = e.Value
		}
	}
	var got Hash
	sum.Sum(got[:0])
	if got != info.StateHash || uint64(len(ck.Keys)) != info.Keys {
		return nil, bad("state hash %s with %d keys, manifest says %s with %d", got, len(ck.Keys), info.StateHash, info.Keys)
	}
	var err error
	if ck.Keyed, err = l.LoadKeyed(ctx, info); err != nil {
		return nil, err
	}
	if ck.Outbox, err = loadList(ctx, l, info, "messages", info.OutboxChunks, info.Outbox, info.OutboxHash, checkOutbox); err != nil {
		return nil, err
	}
	return ck, nil
}

// checkOutbox refuses what is not one of an object's messages.
func checkOutbox(m *OutboxMessage) error {
	if m.Version == 0 || !ValidClass(m.Message.Class) || m.Message.Method == "" || len(m.Message.Body) > MessageBytesMax {
		return fmt.Errorf("message v%d.%d.%d is not a message", m.Version, m.Turn, m.Index)
	}
	return nil
}

// chunkAt reads one chunk of a checkpoint and checks its subject.
func (l *Log) chunkAt(ctx context.Context, info CheckpointInfo, seq uint64) ([]byte, error) {
	shard := l.ShardOf(info.ID)
	m, err := l.msgAt(ctx, CkptStream(shard), seq)
	if err != nil {
		return nil, fmt.Errorf("log: checkpoint %s v%d chunk at %d: %w", info.ID, info.Version, seq, err)
	}
	if dsubj := ckptSubject(shard, info.Class, info.ID, "d"); m.subj != dsubj {
		return nil, fmt.Errorf("log: checkpoint %s/%s v%d: %w: chunk %d is on %s", info.Class, info.ID, info.Version, ErrBadCheckpoint, seq, m.subj)
	}
	return m.data, nil
}

// LoadKeyed reads only the records of keyed turns a checkpoint holds
// (Checkpoint.Keyed) and checks them against its manifest.
func (l *Log) LoadKeyed(ctx context.Context, info CheckpointInfo) ([]KeyedTurn, error) {
	return loadList(ctx, l, info, "records", info.KeyedChunks, info.Keyed, info.KeyedHash, func(e *KeyedTurn) error {
		if err := e.Cause.validateIdem(); err != nil || e.Cause.IdemKey == "" || e.Cause.Outcome == nil {
			return fmt.Errorf("record %q is not a keyed turn's (%v)", e.Cause.IdemKey, err)
		}
		return nil
	})
}

// LoadSQL reads a checkpoint's SQL state (Checkpoint.SQL) and checks it
// against its manifest. A checkpoint without SQL state (info.HasSQL
// false) has none to read.
func (l *Log) LoadSQL(ctx context.Context, info CheckpointInfo) ([]SQLChange, error) {
	return loadList(ctx, l, info, "SQL", info.SQLChunks, info.SQLChanges, info.SQLHash, func(c *SQLChange) error {
		return c.normalize()
	})
}

// loadList reads the chunks of one list a checkpoint holds, checks each
// item, and checks their hash and count against the manifest's.
func loadList[T any](ctx context.Context, l *Log, info CheckpointInfo, what string, seqs []uint64, count uint64, hash Hash, check func(*T) error) ([]T, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("log: checkpoint %s/%s v%d: %w: %s", info.Class, info.ID, info.Version, ErrBadCheckpoint, fmt.Sprintf(format, args...))
	}
	var out []T
	sum := sha256.New()
	for _, seq := range seqs {
		data, err := l.chunkAt(ctx, info, seq)
		if err != nil {
			return nil, err
		}
		sum.Write(data)
		var entries []T
		if err := decMode.Unmarshal(data, &entries); err != nil {
			return nil, bad("%s chunk %d: %v", what, seq, err)
		}
		for i := range entries {
			if err := check(&entries[i]); err != nil {
				return nil, bad("%s chunk %d: %v", what, seq, err)
			}
		}
		out = append(out, entries...)
	}
	var got Hash
	if len(seqs) > 0 {
		sum.Sum(got[:0])
	}
	if got != hash || uint64(len(out)) != count {
		return nil, bad("%s hash %s with %d entries, manifest says %s with %d", what, got, len(out), hash, count)
	}
	return out, nil
}

// msgAt is the message at one stream sequence.
func (l *Log) msgAt(ctx context.Context, stream string, seq uint64) (storedMsg, error) {
	what := fmt.Sprintf("get %s sequence %d", stream, seq)
	m, err := l.directGet(ctx, stream, directGetRequest{Seq: seq}, what)
	if errors.Is(err, ErrNotFound) && l.cfg.Replicas > 1 {
		// The replica that answered may not have it yet: ask the leader.
		return l.leaderGet(ctx, stream, directGetRequest{Seq: seq}, what)
	}
	return m, err
}

// ErrAppendOnly: the log was created append-only, and JetStream never
// lifts DenyPurge, so no class may drop events on it.
var ErrAppendOnly = errors.New("log: the log is append-only")

// AllowsRetention reports whether the log's streams allow DropBefore.
func (l *Log) AllowsRetention() bool { return l.purgeable }

// DropBefore removes the object's events at stream sequences below seq
// (a retaining class's events older than its newest checkpoint). Only a
// log opened with Config.AllowRetention on streams created that way may.
func (l *Log) DropBefore(ctx context.Context, class string, id ID, seq uint64) error {
	if l.closed() {
		return ErrClosed
	}
	if !l.purgeable {
		return ErrAppendOnly
	}
	shard := l.ShardOf(id)
	s, err := l.js.Stream(ctx, LogStream(shard))
	if err != nil {
		return fmt.Errorf("log: drop events of %s: %w", id, err)
	}
	subj := ObjectSubject(shard, class, id)
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(seq)); err != nil {
		return fmt.Errorf("log: drop events of %s below %d: %w", subj, seq, err)
	}
	return nil
}
