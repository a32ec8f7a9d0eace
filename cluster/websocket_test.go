package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"testing"

	"github.com/strata-objects/strata/objects"
)

// TestWSEnvelopeRoundTrip: every WebSocket event crosses nodes whole.
func TestWSEnvelopeRoundTrip(t *testing.T) {
	ref := objects.Ref{Class: "chat", ID: objects.IDFromName("chat", "lobby"), Name: "lobby"}
	cause := objects.Cause{RequestID: "r1", Principal: "p"}
	connect := envelope(KindWSConnect, ref, cause)
	connect.HTTP = &HTTPRequest{Method: "GET", URL: "/v1/objects/chat/lobby/ws?name=alice", Host: "h:1", Header: http.Header{"Origin": {"http://h:1"}}}
	connect.Sock, connect.EdgeRun, connect.From = 7, 1764547706000000001, "n1"
	msg := envelope(KindWSMessage, ref, cause)
	msg.Sock, msg.EdgeRun, msg.OwnerRun, msg.From = 7, 1, 2, "n1"
	msg.Body, msg.Binary = []byte{0, 1, 0xff}, true
	closing := envelope(KindWSClose, ref, cause)
	closing.Sock, closing.EdgeRun, closing.OwnerRun, closing.Code, closing.Reason, closing.From = 7, 1, 2, 4000, "bye", "n1"
	sockErr := envelope(KindWSError, ref, cause)
	sockErr.Sock, sockErr.EdgeRun, sockErr.OwnerRun, sockErr.Reason, sockErr.From = 7, 1, 2, "pong timeout", "n1"
	for _, want := range []*Envelope{connect, msg, closing, sockErr} {
		data, err := encode(want)
		if err != nil {
			t.Fatal(err)
		}
		var got Envelope
		if err := decode(data, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&got, want) {
			t.Fatalf("kind %d: decoded %+v, want %+v", want.Kind, got, *want)
		}
	}
	rep := &Reply{Socket: 42, Node: "n2", Run: 99}
	data, _ := encode(rep)
	var got Reply
	if err := decode(data, &got); err != nil || !reflect.DeepEqual(&got, rep) {
		t.Fatalf("reply: %+v, %v", got, err)
	}
}

// TestWSFrameRoundTrip: frames keep their bytes, kind and numbering.
func TestWSFrameRoundTrip(t *testing.T) {
	for _, want := range []wsFrame{
		{Op: opSend, Sock: 1, Seq: 1, Data: []byte("hello"), From: "n2", Run: 5},
		{Op: opSend, Sock: 1, Seq: 2, Binary: true, Data: []byte{0, 0xff}, From: "n2", Run: 5},
		{Op: opClose, Sock: 1, Seq: 3, Code: objects.CloseServiceRestart, Reason: reasonStopping, From: "n2", Run: 5},
		{Op: opDrop, Sock: 9, From: "n1", Run: 6},
	} {
		data, err := encode(&want)
		if err != nil {
			t.Fatal(err)
		}
		var got wsFrame
		if err := decode(data, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("frame %+v decoded as %+v, %v", want, got, err)
		}
	}
	if a, b := wsSubject(runKey{"n1", 5}), wsSubject(runKey{"n1", 6}); a == b || a != "strata.ws.n1.5" {
		t.Fatalf("subjects of two runs: %q and %q", a, b)
	}
}

// TestWSWireErrors: the errors that end or keep a socket keep their
// identity across nodes, so the edge's gateway picks the same close.
func TestWSWireErrors(t *testing.T) {
	for _, sentinel := range []error{objects.ErrSocketClosed, errSocketLost, errNotOwner, objects.ErrMoved, objects.ErrOverloaded} {
		w := toWire(fmt.Errorf("socket 3: %w", sentinel))
		data, _ := encode(&Reply{Err: w})
		var rep Reply
		if err := decode(data, &rep); err != nil {
			t.Fatal(err)
		}
		if err := rep.Err.err(); !errors.Is(err, sentinel) {
			t.Fatalf("%v crossed as %v", sentinel, err)
		}
	}
}

// FuzzWSFrame: a frame from the network never panics the decoder.
func FuzzWSFrame(f *testing.F) {
	seed, _ := encode(&wsFrame{Op: opSend, Sock: 1, Seq: 1, Data: []byte("x"), From: "n1", Run: 1})
	f.Add(seed)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var fr wsFrame
		if decode(data, &fr) == nil {
			again, err := encode(&fr)
			if err != nil {
				t.Fatal(err)
			}
			var fr2 wsFrame
			if err := decode(again, &fr2); err != nil || !reflect.DeepEqual(fr, fr2) || !bytes.Equal(fr.Data, fr2.Data) {
				t.Fatalf("re-encoded frame differs: %+v vs %+v (%v)", fr, fr2, err)
			}
		}
	})
}
