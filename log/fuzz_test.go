package log

import "testing"

// Fuzz targets for the decoders of bytes that come out of a stream besides
// events (FuzzDecode, event_test.go) (STYLE.md, practice 13). Seeds are
// valid encodings; the corpora under testdata/fuzz/ hold what earlier runs
// found interesting. Run one with e.g.
// go test ./log -run '^$' -fuzz '^FuzzDecodeFire$' -fuzztime 2m.

// FuzzDecodeCheckpoint: a checkpoint manifest and a chunk of key entries
// decode or fail, never panic; an accepted manifest encodes again.
func FuzzDecodeCheckpoint(f *testing.F) {
	info := CheckpointInfo{Format: FormatVersion, Class: "kv", ID: objID(1), Name: "n", Version: 3, Seq: 9, Time: 1,
		Hash: Hash{1}, Chunks: []uint64{7, 8}, StateHash: Hash{2}, Keys: 2, Alarms: []alarmEntry{{Name: "a", At: 5}}}
	b, err := encMode.Marshal(info)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	chunks, err := encodeChunks(map[string][]byte{"a": []byte("1"), "b": {}})
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range chunks {
		f.Add(c)
	}
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		if info, err := decodeInfo("S", "", storedMsg{seq: 1, subj: "s", data: b}); err == nil {
			if _, err := encMode.Marshal(info); err != nil {
				t.Fatalf("an accepted manifest does not encode: %v", err)
			}
		}
		var entries []keyEntry
		_ = decMode.Unmarshal(b, &entries)
	})
}

// FuzzDecodeFire: a schedule's or fire's payload decodes or fails, never
// panics; an accepted fire round-trips.
func FuzzDecodeFire(f *testing.F) {
	for _, fire := range []Fire{{Class: "kv", ID: objID(1), At: 1}, {Class: "chat", ID: objID(2), Name: "reminder", At: -5}} {
		b, err := fire.encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		fire, err := decodeFire(b)
		if err != nil {
			return
		}
		enc, err := fire.encode()
		if err != nil {
			t.Fatalf("an accepted fire does not encode: %v", err)
		}
		if again, err := decodeFire(enc); err != nil || again != fire {
			t.Fatalf("fire %+v round-trips to %+v (%v)", fire, again, err)
		}
	})
}
