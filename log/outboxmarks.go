package log

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// OutboxMarksBucket is the KV bucket of the senders whose durable messages
// have waited long for delivery (objects' outbox marks them). A node that
// takes over a dead node's objects reads the last minutes of the log for
// the senders among them; a sender whose pending messages are older than
// that is found here instead. The bucket is a hint, never the truth: a
// sender's log alone says what it has pending, and a sender wrongly
// marked costs one activation that finds nothing to deliver.
const OutboxMarksBucket = "STRATA_OUTBOX_MARKS"

// The bucket also names the senders with dead letters (DeadMark): a
// sender's dead letters are in the snapshot of the nodes that ran it, and
// a node that is gone can no longer name them, so a listing of the
// cluster's dead letters asks the owners of these senders too. A dead
// mark's key is "_dead.<class>.<id in hex>" ("_dead" is no class name, so
// Marked passes it by).
const deadMarkPrefix = "_dead."

// OutboxMarks is the outbox marks bucket.
type OutboxMarks struct {
	kv jetstream.KeyValue
}

// OpenOutboxMarks creates the bucket if needed. It is replicated as the
// streams are, so marks outlive the node that wrote them.
func (l *Log) OpenOutboxMarks(ctx context.Context) (*OutboxMarks, error) {
	kv, err := l.openBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      OutboxMarksBucket,
		Description: "Strata senders with durable messages pending for long",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    l.cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	return &OutboxMarks{kv: kv}, nil
}

// markKey is "<class>.<id in hex>": a class name is a-z, 0-9 and '-'.
func markKey(class string, id ID) string { return class + "." + hex.EncodeToString(id[:]) }

func parseMarkKey(k string) (string, ID, bool) {
	class, h, ok := strings.Cut(k, ".")
	var id ID
	if !ok || !ValidClass(class) || hex.DecodedLen(len(h)) != len(id) {
		return "", id, false
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return "", id, false
	}
	return class, id, true
}

// Mark records that class/id has messages pending for long, and returns
// the mark's revision (for Unmark).
func (m *OutboxMarks) Mark(ctx context.Context, class string, id ID) (uint64, error) {
	rev, err := m.kv.Put(ctx, markKey(class, id), nil)
	if err != nil {
		return 0, fmt.Errorf("log: mark the outbox of %s/%s: %w", class, id, err)
	}
	return rev, nil
}

// Unmark removes the mark of class/id if it is still at revision rev; a
// mark written again since (by the sender's new owner) is left alone.
func (m *OutboxMarks) Unmark(ctx context.Context, class string, id ID, rev uint64) error {
	if err := m.deleteAt(ctx, markKey(class, id), rev); err != nil {
		return fmt.Errorf("log: unmark the outbox of %s/%s: %w", class, id, err)
	}
	return nil
}

// deleteAt deletes key if it is still at revision rev.
func (m *OutboxMarks) deleteAt(ctx context.Context, key string, rev uint64) error {
	err := m.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return nil // written again since: not this mark's to remove
	}
	return err
}

// Marked calls fn with every mark of an object for which want reports
// true, and its revision.
func (m *OutboxMarks) Marked(ctx context.Context, want func(class string, id ID) bool, fn func(class string, id ID, rev uint64) error) error {
	return m.each(ctx, "", func(class string, id ID, rev uint64) error {
		if !want(class, id) {
			return nil
		}
		return fn(class, id, rev)
	})
}

// each calls fn with every key that starts with prefix and is a mark once
// prefix is cut, and its revision.
func (m *OutboxMarks) each(ctx context.Context, prefix string, fn func(class string, id ID, rev uint64) error) error {
	w, err := m.kv.Watch(ctx, prefix+">", jetstream.IgnoreDeletes(), jetstream.MetaOnly())
	if err != nil {
		return fmt.Errorf("log: list %s: %w", OutboxMarksBucket, err)
	}
	defer w.Stop()
	// The watcher replays the current keys, then a nil marks their end.
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("log: list %s: watch closed", OutboxMarksBucket)
			}
			if e == nil {
				return nil
			}
			k, ok := strings.CutPrefix(e.Key(), prefix)
			if !ok {
				continue
			}
			class, id, ok := parseMarkKey(k)
			if !ok {
				continue // not a key Strata writes
			}
			if err := fn(class, id, e.Revision()); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("log: list %s: %w", OutboxMarksBucket, ctx.Err())
		}
	}
}

// DeadMark records that class/id has dead letters.
func (m *OutboxMarks) DeadMark(ctx context.Context, class string, id ID) error {
	if _, err := m.kv.Put(ctx, deadMarkPrefix+markKey(class, id), nil); err != nil {
		return fmt.Errorf("log: mark the dead letters of %s/%s: %w", class, id, err)
	}
	return nil
}

// DeadUnmark removes the dead mark of class/id if it is still at revision
// rev: a sender whose letter died again since keeps its mark.
func (m *OutboxMarks) DeadUnmark(ctx context.Context, class string, id ID, rev uint64) error {
	if err := m.deleteAt(ctx, deadMarkPrefix+markKey(class, id), rev); err != nil {
		return fmt.Errorf("log: unmark the dead letters of %s/%s: %w", class, id, err)
	}
	return nil
}

// DeadMarked calls fn with every sender marked as having dead letters,
// and its mark's revision.
func (m *OutboxMarks) DeadMarked(ctx context.Context, fn func(class string, id ID, rev uint64) error) error {
	return m.each(ctx, deadMarkPrefix, fn)
}
