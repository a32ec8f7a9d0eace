package log

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestDecodeAck: the plain form's fast path and encoding/json read every
// answer the same, and anything but the plain form goes to encoding/json.
func TestDecodeAck(t *testing.T) {
	for _, data := range []string{
		`{"stream":"STRATA_LOG_0","seq":1}`,
		`{"stream":"STRATA_LOG_12","seq":18446744073709551615}`,
		`{"stream":"S","seq":42,"duplicate":true}`,
		`{"stream":"S","domain":"hub","seq":7}`,
		`{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"S","seq":0}`,
		`{"stream":"S","seq":7,"batch":"abc","count":3}`,
		`{"stream":"a\"b","seq":7}`,
		`{"stream":"S","seq":0}`,
		`{"stream":"S","seq":07}`,
		`{"stream":"S","seq":18446744073709551616}`,
		`{"stream":"S","seq":1} `,
		`{"stream":"","seq":1}`,
		`not json`,
		``,
	} {
		var fast, slow batchAck
		errFast := decodeAck([]byte(data), &fast)
		errSlow := json.Unmarshal([]byte(data), &slow)
		if (errFast == nil) != (errSlow == nil) || !reflect.DeepEqual(fast, slow) {
			t.Errorf("%s: decodeAck %+v, %v; encoding/json %+v, %v", data, fast, errFast, slow, errSlow)
		}
	}
	if s, seq, ok := plainAck([]byte(`{"stream":"STRATA_LOG_3","seq":99}`)); !ok || s != "STRATA_LOG_3" || seq != 99 {
		t.Errorf("plain ack not read by the fast path: %q %d %v", s, seq, ok)
	}
	for _, data := range []string{`{"stream":"S","seq":7,"duplicate":true}`, `{"stream":"S","seq":0}`, `{"stream":"a\"b","seq":7}`} {
		if _, _, ok := plainAck([]byte(data)); ok {
			t.Errorf("%s: taken by the fast path", data)
		}
	}
}

func FuzzDecodeAck(f *testing.F) {
	f.Add([]byte(`{"stream":"STRATA_LOG_0","seq":1}`))
	f.Add([]byte(`{"stream":"S","seq":42,"duplicate":true}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fast, slow batchAck
		errFast := decodeAck(data, &fast)
		errSlow := json.Unmarshal(data, &slow)
		if (errFast == nil) != (errSlow == nil) || errSlow == nil && !reflect.DeepEqual(fast, slow) {
			t.Errorf("%q: decodeAck %+v, %v; encoding/json %+v, %v", data, fast, errFast, slow, errSlow)
		}
	})
}
