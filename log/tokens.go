package log

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// The token store (DESIGN.md, "Security model"): the gateway's bearer
// tokens live in a JetStream KV bucket, one key per token id, so every node
// of a cluster knows them at once. Each node watches the bucket and keeps
// the records in memory: a request is checked against memory, never a
// round trip, and a revocation reaches every node as fast as the watch
// delivers it (well under a second on a healthy cluster).
//
// The store keeps only what the gateway gives it: a token's id, the
// SHA-256 of its secret, its scopes and who created and revoked it when.
// It never sees a secret. What the scopes mean is the gateway's business.
// Records are never deleted: a revoked token keeps its record, so the
// bucket is also the record of who created and revoked what.

// TokensBucket is the KV bucket holding the token records.
const TokensBucket = "STRATA_TOKENS"

// tokenIDBytesMax bounds a token id (it is also a KV key).
const tokenIDBytesMax = 64

var (
	// ErrTokenExists: CreateToken found a record under that id.
	ErrTokenExists = errors.New("log: a token with this id exists")
	// ErrNoToken: no record under that id.
	ErrNoToken = errors.New("log: no such token")
)

// Token is one token's record.
type Token struct {
	ID        string   `cbor:"1,keyasint"`
	Hash      []byte   `cbor:"2,keyasint"` // SHA-256 of the secret
	Name      string   `cbor:"3,keyasint,omitempty"`
	Scopes    []string `cbor:"4,keyasint"`
	CreatedAt int64    `cbor:"5,keyasint"` // unix nanoseconds
	CreatedBy string   `cbor:"6,keyasint,omitempty"`
	RevokedAt int64    `cbor:"7,keyasint,omitempty"` // 0: in force
	RevokedBy string   `cbor:"8,keyasint,omitempty"`
}

// Revoked says whether the token was revoked.
func (t Token) Revoked() bool { return t.RevokedAt != 0 }

// ValidTokenID checks a token id: 1 to 64 of a-z, 0-9, '-' and '_' (it is
// a KV key and shows in every event's cause).
func ValidTokenID(id string) error {
	if id == "" || len(id) > tokenIDBytesMax {
		return fmt.Errorf("log: token id of %d bytes, want 1..%d", len(id), tokenIDBytesMax)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("log: token id %q: want a-z, 0-9, '-' or '_'", id)
		}
	}
	return nil
}

// Tokens is this node's view of the token bucket, kept current by a watch.
type Tokens struct {
	kv     jetstream.KeyValue
	logger *slog.Logger
	cancel context.CancelFunc
	done   chan struct{}

	mu struct {
		sync.Mutex
		byID map[string]tokenEntry
	}
}

// OpenTokens creates the bucket if needed, reads every record and watches
// for changes until Close.
func (l *Log) OpenTokens(ctx context.Context) (*Tokens, error) {
	kv, err := l.openBucket(ctx, jetstream.KeyValueConfig{
		Bucket:      TokensBucket,
		Description: "Strata gateway tokens (hashes only)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    l.cfg.Replicas,
	})
	if err != nil {
		return nil, err
	}
	t := &Tokens{kv: kv, logger: l.cfg.Logger.With("component", "tokens"), done: make(chan struct{})}
	t.mu.byID = map[string]tokenEntry{}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("log: watch %s: %w", TokensBucket, err)
	}
	// The watcher replays the current values, then a nil marks their end:
	// the view is complete before OpenTokens returns.
	for done := false; !done; {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("log: watch %s: closed", TokensBucket)
			}
			if e == nil {
				done = true
				break
			}
			t.apply(e)
		case <-ctx.Done():
			w.Stop()
			return nil, fmt.Errorf("log: watch %s: %w", TokensBucket, ctx.Err())
		}
	}
	var runCtx context.Context
	runCtx, t.cancel = context.WithCancel(context.Background())
	go t.run(runCtx, w)
	return t, nil
}

// Close stops the watch.
func (t *Tokens) Close() {
	t.cancel()
	<-t.done
}

func (t *Tokens) run(ctx context.Context, w jetstream.KeyWatcher) {
	defer close(t.done)
	defer func() { w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if ok {
				if e != nil {
					t.apply(e)
				}
				continue
			}
			// The watch ended (its stream moved): start another, which
			// replays every record, so nothing in between is missed.
			for {
				wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				nw, err := t.kv.WatchAll(wctx)
				cancel()
				if err == nil {
					w = nw
					break
				}
				t.logger.Warn("token watch not restarted; retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Second):
				}
			}
		}
	}
}

// tokenEntry is a record and the bucket revision it was read at: an
// update from the watch older than what this node wrote itself is stale.
type tokenEntry struct {
	tok Token
	rev uint64
}

func (t *Tokens) apply(e jetstream.KeyValueEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if have, ok := t.mu.byID[e.Key()]; ok && have.rev > e.Revision() {
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(t.mu.byID, e.Key())
		return
	}
	var tok Token
	if err := cbor.Unmarshal(e.Value(), &tok); err != nil || tok.ID != e.Key() {
		// A record this node cannot read grants nothing.
		delete(t.mu.byID, e.Key())
		t.logger.Warn("unreadable token record ignored", "id", e.Key(), "err", err)
		return
	}
	t.mu.byID[tok.ID] = tokenEntry{tok, e.Revision()}
}

// set puts a record this node wrote at rev into its view.
func (t *Tokens) set(tok Token, rev uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if have, ok := t.mu.byID[tok.ID]; !ok || have.rev < rev {
		t.mu.byID[tok.ID] = tokenEntry{tok, rev}
	}
}

// Token returns the record of id as this node knows it.
func (t *Tokens) Token(id string) (Token, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.mu.byID[id]
	return e.tok, ok
}

// Tokens returns every record, oldest first.
func (t *Tokens) Tokens() []Token {
	t.mu.Lock()
	out := make([]Token, 0, len(t.mu.byID))
	for _, e := range t.mu.byID {
		out = append(out, e.tok)
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// CreateToken stores a new record, unless one exists under its id
// (ErrTokenExists): of two nodes creating the same id, exactly one wins.
// The record is in this node's view when CreateToken returns.
func (t *Tokens) CreateToken(ctx context.Context, tok Token) error {
	if err := ValidTokenID(tok.ID); err != nil {
		return err
	}
	if len(tok.Hash) == 0 {
		return fmt.Errorf("log: token %s has no hash", tok.ID)
	}
	b, err := cbor.Marshal(tok)
	if err != nil {
		return fmt.Errorf("log: encode token %s: %w", tok.ID, err)
	}
	rev, err := t.kv.Create(ctx, tok.ID, b)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("%w: %s", ErrTokenExists, tok.ID)
		}
		return fmt.Errorf("log: create token %s: %w", tok.ID, err)
	}
	t.set(tok, rev)
	return nil
}

// RevokeToken marks id revoked by by at at, and returns the record. A
// token already revoked keeps its first revocation.
func (t *Tokens) RevokeToken(ctx context.Context, id, by string, at time.Time) (Token, error) {
	if err := ValidTokenID(id); err != nil {
		return Token{}, fmt.Errorf("%w: %w", ErrNoToken, err)
	}
	for {
		e, err := t.kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return Token{}, fmt.Errorf("%w: %s", ErrNoToken, id)
		}
		if err != nil {
			return Token{}, fmt.Errorf("log: read token %s: %w", id, err)
		}
		var tok Token
		if err := cbor.Unmarshal(e.Value(), &tok); err != nil {
			return Token{}, fmt.Errorf("log: decode token %s: %w", id, err)
		}
		if tok.Revoked() {
			return tok, nil
		}
		tok.RevokedAt, tok.RevokedBy = at.UnixNano(), by
		b, err := cbor.Marshal(tok)
		if err != nil {
			return Token{}, fmt.Errorf("log: encode token %s: %w", id, err)
		}
		rev, err := t.kv.Update(ctx, id, b, e.Revision())
		if err == nil {
			t.set(tok, rev)
			return tok, nil
		}
		var apiErr *jetstream.APIError
		if !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeWrongLastSeq && apiErr.ErrorCode != errCodeWrongLastSeqConst {
			return Token{}, fmt.Errorf("log: revoke token %s: %w", id, err)
		}
		// Changed meanwhile: read it again.
	}
}
