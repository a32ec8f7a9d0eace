package log

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestCodeRecordCalls: a deployed class's record keeps its calls' answers
// and the continued mark through encoding, and Validate bounds them.
func TestCodeRecordCalls(t *testing.T) {
	rec := func() *CodeRecord {
		return &CodeRecord{ClassVersion: 3, Time: 1700000000000, Seed: bytes.Repeat([]byte{1}, 32), Calls: []CodeCall{
			{Output: []byte(`{"value":7}`), InputHash: bytes.Repeat([]byte{2}, 32)},
			{Code: "call_cycle", Status: 0, Message: "call jcaller/x.ping: call cycle"},
			{Code: "forbidden", Status: 403, Message: "no"},
			{OutputBytes: 20000, OutputHash: bytes.Repeat([]byte{3}, 32)},
		}}
	}
	e := fullEvent()
	e.Turns[0].Cause.Code = rec()
	e.Turns[1].Cause.Code = &CodeRecord{ClassVersion: 3, Continued: true}
	b, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.Turns[0].Cause.Code, rec()) || !d.Turns[1].Cause.Code.Continued {
		t.Fatalf("round trip: %+v, %+v", d.Turns[0].Cause.Code, d.Turns[1].Cause.Code)
	}
	bad := map[string]func(c *CodeRecord){
		"answer too long":     func(c *CodeRecord) { c.Calls[0].Output = make([]byte, CodeInputBytesMax+1) },
		"answers too long":    func(c *CodeRecord) { c.Calls = manyAnswers(CodeCallsBytesMax/CodeInputBytesMax+1, CodeInputBytesMax) },
		"too many answers":    func(c *CodeRecord) { c.Calls = manyAnswers(CodeCallsMax+1, 0) },
		"output hash short":   func(c *CodeRecord) { c.Calls[3].OutputHash = make([]byte, 31) },
		"input hash short":    func(c *CodeRecord) { c.Calls[0].InputHash = make([]byte, 5) },
		"negative length":     func(c *CodeRecord) { c.Calls[3].OutputBytes = -1 },
		"message too long":    func(c *CodeRecord) { c.Calls[1].Message = strings.Repeat("m", CodeCallMessageMax+1) },
		"error code too long": func(c *CodeRecord) { c.Calls[1].Code = strings.Repeat("c", CallMethodBytesMax+1) },
	}
	for name, mutate := range bad {
		e := fullEvent()
		c := rec()
		mutate(c)
		e.Turns[0].Cause.Code = c
		if _, err := Encode(e); !errors.Is(err, ErrBadEvent) {
			t.Errorf("%s: Encode: %v, want ErrBadEvent", name, err)
		}
	}
}

func manyAnswers(n, size int) []CodeCall {
	out := make([]CodeCall, n)
	for i := range out {
		out[i].Output = make([]byte, size)
	}
	return out
}
