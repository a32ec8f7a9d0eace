package classes_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

func sessionCall(t *testing.T, n *testnode.Node, method, in string) classes.SessionState {
	t.Helper()
	ref, err := n.Runtime.RefByName("session", "alice")
	if err != nil {
		t.Fatal(err)
	}
	out, err := n.Runtime.Call(context.Background(), ref, method, []byte(in), jsonCodec{}, objects.Cause{})
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	var st classes.SessionState
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestSessionExpiresAfterInactivity(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	st := sessionCall(t, n, "touch", `{"ttl":"400ms","data":{"user":"alice"}}`)
	if !st.Active || st.ExpiresAt == nil || string(st.Data) != `{"user":"alice"}` {
		t.Fatalf("after touch: %+v", st)
	}
	// Touching keeps it alive past its first expiry.
	for range 4 {
		time.Sleep(200 * time.Millisecond)
		if st := sessionCall(t, n, "touch", `{"ttl":"400ms"}`); !st.Active {
			t.Fatalf("session expired while touched: %+v", st)
		}
	}
	last := time.Now()
	deadline := time.Now().Add(5 * time.Second)
	for sessionCall(t, n, "get", ``).Active {
		if time.Now().After(deadline) {
			t.Fatal("session never expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if idle := time.Since(last); idle < 400*time.Millisecond {
		t.Fatalf("expired after %s idle, want at least 400ms", idle)
	}
}
