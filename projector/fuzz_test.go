package projector

import (
	"bytes"
	"testing"

	"github.com/strata-objects/strata/log"
)

// FuzzDecodeMeta: an object's meta record as read from Badger decodes or
// fails, never panics, and an accepted one encodes back to the same bytes
// (the format has one encoding). Corpus: testdata/fuzz/FuzzDecodeMeta.
func FuzzDecodeMeta(f *testing.F) {
	f.Add(encodeMeta(Meta{Version: 1, Seq: 1}))
	f.Add(encodeMeta(Meta{Version: 7, Seq: 99, Hash: log.Hash{1, 2}, Name: "alice", Updated: 1700000000}))
	f.Add([]byte{metaFormat})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		if again := encodeMeta(m); !bytes.Equal(again, b) {
			t.Fatalf("meta %+v encodes to %x, was %x", m, again, b)
		}
	})
}

// FuzzDecodeAlarm: an alarm index value decodes or fails, never panics.
func FuzzDecodeAlarm(f *testing.F) {
	f.Add(encodeAlarm(1700000000))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if at, err := decodeAlarm(b); err == nil && !bytes.Equal(encodeAlarm(at), b) {
			t.Fatalf("alarm %d encodes to %x, was %x", at, encodeAlarm(at), b)
		}
	})
}
