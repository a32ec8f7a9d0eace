package log

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
)

// Reads use JetStream's direct get, batched: no consumer per object, which
// would not scale in a cluster. A batch answers up to readBatch messages
// and ends with a 204 EOB status that says how many more match.
const (
	readBatch    = 256
	readBytesMax = 8 << 20
)

type storedMsg struct {
	seq  uint64
	data []byte
}

type directGetRequest struct {
	Seq      uint64 `json:"seq,omitempty"`
	LastFor  string `json:"last_by_subj,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

func directGetSubject(stream string) string { return "$JS.API.DIRECT.GET." + stream }

// lastMsg is the last message on subj, or ErrNotFound.
func (l *Log) lastMsg(ctx context.Context, stream, subj string) (storedMsg, error) {
	req, _ := json.Marshal(directGetRequest{LastFor: subj})
	ctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
	defer cancel()
	resp, err := l.nc.RequestWithContext(ctx, directGetSubject(stream), req)
	if err != nil {
		return storedMsg{}, fmt.Errorf("last of %s: %w", subj, err)
	}
	return parseDirect(resp, subj)
}

func parseDirect(m *nats.Msg, what string) (storedMsg, error) {
	if status := m.Header.Get("Status"); status != "" {
		if status == "404" {
			return storedMsg{}, ErrNotFound
		}
		return storedMsg{}, fmt.Errorf("read %s: status %s %s", what, status, m.Header.Get("Description"))
	}
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return storedMsg{}, fmt.Errorf("read %s: bad Nats-Sequence %q", what, m.Header.Get("Nats-Sequence"))
	}
	return storedMsg{seq: seq, data: m.Data}, nil
}

func record(m storedMsg) (Record, error) {
	e, err := Decode(m.data)
	if err != nil {
		return Record{}, fmt.Errorf("event at sequence %d: %w", m.seq, err)
	}
	return Record{Seq: m.seq, Data: m.data, Event: e}, nil
}

// Last is the object's newest event, or ErrNotFound.
func (l *Log) Last(ctx context.Context, class string, id ID) (Record, error) {
	shard := l.ShardOf(id)
	m, err := l.lastMsg(ctx, LogStream(shard), ObjectSubject(shard, class, id))
	if err != nil {
		return Record{}, err
	}
	return record(m)
}

// Read calls fn for each of the object's events at stream sequence fromSeq
// or later, in order. An error from fn stops the read and is returned.
func (l *Log) Read(ctx context.Context, class string, id ID, fromSeq uint64, fn func(Record) error) error {
	shard := l.ShardOf(id)
	return l.readRange(ctx, LogStream(shard), ObjectSubject(shard, class, id), fromSeq, fn)
}

// Scan calls fn for every event in shard's log from fromSeq, in order.
func (l *Log) Scan(ctx context.Context, shard int, fromSeq uint64, fn func(Record) error) error {
	if shard < 0 || shard >= l.shards {
		return fmt.Errorf("scan: shard %d of %d", shard, l.shards)
	}
	return l.readRange(ctx, LogStream(shard), fmt.Sprintf("strata.%d.obj.>", shard), fromSeq, fn)
}

func (l *Log) readRange(ctx context.Context, stream, filter string, from uint64, fn func(Record) error) error {
	if from == 0 {
		from = 1
	}
	inbox := l.nc.NewRespInbox()
	sub, err := l.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("read %s: %w", filter, err)
	}
	defer sub.Unsubscribe()
	for {
		req, _ := json.Marshal(directGetRequest{Seq: from, NextFor: filter, Batch: readBatch, MaxBytes: readBytesMax})
		if err := l.nc.PublishRequest(directGetSubject(stream), inbox, req); err != nil {
			return fmt.Errorf("read %s: %w", filter, err)
		}
		got, pending := 0, uint64(0)
		for {
			rctx, cancel := context.WithTimeout(ctx, l.cfg.RequestTimeout)
			m, err := sub.NextMsgWithContext(rctx)
			cancel()
			if err != nil {
				return fmt.Errorf("read %s from %d: %w", filter, from, err)
			}
			if m.Header.Get("Status") == "204" { // EOB
				pending, _ = strconv.ParseUint(m.Header.Get("Nats-Num-Pending"), 10, 64)
				break
			}
			sm, err := parseDirect(m, filter)
			if errors.Is(err, ErrNotFound) {
				return nil // nothing at or after from
			}
			if err != nil {
				return err
			}
			rec, err := record(sm)
			if err != nil {
				return fmt.Errorf("%s: %w", stream, err)
			}
			if err := fn(rec); err != nil {
				return err
			}
			from = sm.seq + 1
			got++
		}
		if pending == 0 || got == 0 {
			return nil
		}
	}
}
