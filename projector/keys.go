package projector

import (
	"encoding/binary"
	"fmt"

	"github.com/strata-objects/strata/log"
)

// Key kinds: the first byte of every key (see the layout in doc.go).
const (
	kindState = 'd'
	kindMeta  = 'm'
	kindAlarm = 'a'
)

// objectKey is <kind><class>\x00<id><suffix>. The caller has checked the
// class with log.ValidClass, which is what makes \x00 a separator.
func objectKey(kind byte, class string, id log.ID, suffix string) []byte {
	b := make([]byte, 0, 1+len(class)+1+len(id)+len(suffix))
	b = append(b, kind)
	b = append(b, class...)
	b = append(b, 0)
	b = append(b, id[:]...)
	return append(b, suffix...)
}

func stateKey(class string, id log.ID, key string) []byte {
	return objectKey(kindState, class, id, key)
}

func metaKey(class string, id log.ID) []byte { return objectKey(kindMeta, class, id, "") }

func alarmKey(class string, id log.ID, name string) []byte {
	return objectKey(kindAlarm, class, id, name)
}

// Meta is what the snapshot knows of one object.
type Meta struct {
	Version uint64   // last applied event version; 0 if the object is unknown
	Seq     uint64   // stream sequence of that event
	Hash    log.Hash // chain hash of that event (log.Record.Hash)
	Name    string   // the object's name from its first event, if any
	Updated int64    // Unix nanoseconds of that event's Time
}

// Meta encoding: a format byte, then fixed-width big-endian fields, then
// the name, which takes the rest of the value.
//
//	[0]      metaFormat
//	[1:9]    Version
//	[9:17]   Seq
//	[17:49]  Hash
//	[49:57]  Updated
//	[57:]    Name
const (
	metaFormat     = 1
	metaFixedBytes = 1 + 8 + 8 + 32 + 8
)

func encodeMeta(m Meta) []byte {
	b := make([]byte, metaFixedBytes, metaFixedBytes+len(m.Name))
	b[0] = metaFormat
	binary.BigEndian.PutUint64(b[1:], m.Version)
	binary.BigEndian.PutUint64(b[9:], m.Seq)
	copy(b[17:49], m.Hash[:])
	binary.BigEndian.PutUint64(b[49:], uint64(m.Updated))
	return append(b, m.Name...)
}

func decodeMeta(b []byte) (Meta, error) {
	if len(b) < metaFixedBytes || b[0] != metaFormat {
		return Meta{}, fmt.Errorf("corrupt meta: %d bytes, format %d", len(b), firstByte(b))
	}
	var m Meta
	m.Version = binary.BigEndian.Uint64(b[1:])
	m.Seq = binary.BigEndian.Uint64(b[9:])
	copy(m.Hash[:], b[17:49])
	m.Updated = int64(binary.BigEndian.Uint64(b[49:]))
	m.Name = string(b[metaFixedBytes:])
	if m.Version == 0 {
		return Meta{}, fmt.Errorf("corrupt meta: version 0 stored")
	}
	return m, nil
}

func encodeAlarm(at int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(at)) }

func decodeAlarm(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("corrupt alarm: %d bytes", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

func firstByte(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}

// checkClass refuses a class name that would break the key layout.
func checkClass(class string) error {
	if !log.ValidClass(class) {
		return fmt.Errorf("projector: invalid class %q", class)
	}
	return nil
}

// checkRecord refuses a record the projector cannot apply. Records decoded
// by the log already pass; this catches programmer errors before anything
// is queued or written.
func checkRecord(rec log.Record) error {
	if rec.Event == nil {
		return fmt.Errorf("projector: record at sequence %d has no event: %w", rec.Seq, log.ErrBadEvent)
	}
	if err := rec.Event.Validate(); err != nil {
		return fmt.Errorf("projector: record at sequence %d: %w", rec.Seq, err)
	}
	// The meta keeps the sequence (catch-up reads from Seq+1) and the
	// chain hash, which covers Data: a record without them would store a
	// meta that lies.
	if rec.Seq == 0 || len(rec.Data) == 0 {
		return fmt.Errorf("projector: record of %s/%s v%d: sequence %d, %d bytes of data: %w",
			rec.Event.Class, rec.Event.ID, rec.Event.Version, rec.Seq, len(rec.Data), log.ErrBadEvent)
	}
	return nil
}
