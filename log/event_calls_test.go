package log

import (
	"reflect"
	"strings"
	"testing"
)

// TestEventCallsRoundTrip: a turn's calls, messages and caller survive
// encoding; bad ones are refused by Encode and Decode alike.
func TestEventCallsRoundTrip(t *testing.T) {
	ev := &Event{Format: FormatVersion, Class: "account", Version: 2, Time: 7, Turns: []Turn{{
		Cause: Cause{Via: ViaRPC, Method: "deposit", Caller: &Caller{Class: "account", ID: ID{1}, Version: 5, Turn: 1, Index: 2, Kind: CallerMessage}},
		Calls: []Call{{Class: "account", ID: ID{2}, Method: "deposit", Error: "call_cycle"}},
		Sends: []Message{{Class: "account", ID: ID{3}, Method: "deposit", Body: []byte(`{"amount":1}`), Reply: "deposited"}},
	}}}
	b, err := Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ev) {
		t.Fatalf("decoded %+v, want %+v", got, ev)
	}
	for name, edit := range map[string]func(*Turn){
		"caller class":   func(t *Turn) { t.Cause.Caller.Class = "Bad" },
		"caller version": func(t *Turn) { t.Cause.Caller.Version = 0 },
		"caller kind":    func(t *Turn) { t.Cause.Caller.Kind = 9 },
		"call class":     func(t *Turn) { t.Calls[0].Class = "" },
		"call method":    func(t *Turn) { t.Calls[0].Method = strings.Repeat("m", CallMethodBytesMax+1) },
		"calls":          func(t *Turn) { t.Calls = make([]Call, TurnCallsMax+1) },
		"message class":  func(t *Turn) { t.Sends[0].Class = "" },
		"message method": func(t *Turn) { t.Sends[0].Method = "" },
		"message body":   func(t *Turn) { t.Sends[0].Body = make([]byte, MessageBytesMax+1) },
		"messages":       func(t *Turn) { t.Sends = make([]Message, TurnSendsMax+1) },
	} {
		bad := *ev
		turn := ev.Turns[0]
		caller := *turn.Cause.Caller
		turn.Cause.Caller = &caller
		turn.Calls = append([]Call(nil), turn.Calls...)
		turn.Sends = append([]Message(nil), turn.Sends...)
		edit(&turn)
		bad.Turns = []Turn{turn}
		if _, err := Encode(&bad); err == nil {
			t.Errorf("%s: encoded", name)
		}
		raw, err := encMode.Marshal(&bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(raw); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}
