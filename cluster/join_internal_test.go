package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

type testCodec struct{}

func (testCodec) Decode(b []byte, v any) error { return json.Unmarshal(b, v) }
func (testCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

// TestNotJoinedRunsNothing: between subscribing to forwarded requests and
// joining the membership (Start, in that order) a node's view holds only
// itself. A request forwarded to it then must be refused as "not the
// owner" (the sender retries), and a claim must not go through: running
// the turn there, without the old owner releasing the object, let the old
// owner answer a read from memory after this node's write (a stale read
// the container nemesis found).
func TestNotJoinedRunsNothing(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	r, err := New(Config{Node: "n3", Log: n.Log, Codec: testCodec{}})
	if err != nil {
		t.Fatal(err)
	}
	r.rt = n.Runtime
	r.onChange([]log.Member{{Node: "n3"}}) // what JoinMembers shows before it returns
	ref, err := n.Runtime.RefByName("kv", "r5")
	if err != nil {
		t.Fatal(err)
	}
	if owner := r.OwnerOf(ref.ID); owner != "n3" {
		t.Fatalf("owner of r5 in a view of n3 alone: %q", owner)
	}
	env := &Envelope{Kind: KindCall, Class: ref.Class, ID: ref.ID, Name: ref.Name, Method: "put", Body: []byte(`{"key":"k","value":"v"}`), From: "n1"}
	data, err := encode(env)
	if err != nil {
		t.Fatal(err)
	}
	var rep Reply
	if err := decode(r.handle(context.Background(), data), &rep); err != nil {
		t.Fatal(err)
	}
	if err := rep.Err.err(); !errors.Is(err, errNotOwner) {
		t.Fatalf("a forwarded put before the join: %v, want errNotOwner", err)
	}
	if err := r.Claim(context.Background(), ref.Class, ref.ID); !errors.Is(err, objects.ErrMoved) {
		t.Fatalf("a claim before the join: %v, want ErrMoved", err)
	}
	if v := n.Runtime.Stats().Live; v != 0 {
		t.Fatalf("%d activations after refusing: the put ran", v)
	}
}
