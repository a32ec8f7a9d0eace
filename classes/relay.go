package classes

import (
	"net/http"

	"github.com/strata-objects/strata/objects"
)

// relay passes a hop along a path of objects, by synchronous call or by
// durable message: each object counts the hops it saw under "hops" and
// passes the rest of the path to the next. It is the example of calls and
// messages between objects, what `strata bench` C1, C2 and M1 measure,
// and what a causal trace (`strata history --trace`) follows.
type relay struct{}

// Relay is the "relay" class: hop, get.
func Relay() *objects.Class {
	return objects.Define("relay", func() *relay { return &relay{} })
}

// RelayInput is a hop: the relay objects it goes on to, in order, and how.
type RelayInput struct {
	Path []string `json:"path,omitempty"`
	// By is "call" (a synchronous call, the default) or "message" (a
	// durable message, sent once this hop's event is acknowledged).
	By string `json:"by,omitempty"`
	// WriteFirst counts this hop before passing it on, so the count is
	// committed (an event of its own) before a call leaves; by default
	// the count follows the call, in the event that records it.
	WriteFirst bool `json:"write_first,omitempty"`
}

// RelayHops is what relay methods answer: the hops this object saw.
type RelayHops struct {
	Hops int64 `json:"hops"`
}

// relayPathMax bounds a path: a chain of calls stops at
// objects.CallDepthMax anyway.
const relayPathMax = objects.CallDepthMax - 1

// Hop counts a hop here and passes the rest of the path on.
func (*relay) Hop(ctx *objects.Ctx, in RelayInput) (RelayHops, error) {
	if len(in.Path) > relayPathMax {
		return RelayHops{}, objects.Errorf(http.StatusBadRequest, "path_too_long", "a path of %d objects: at most %d", len(in.Path), relayPathMax)
	}
	for _, name := range in.Path {
		if err := objects.ValidateName(name); err != nil {
			return RelayHops{}, err
		}
	}
	if in.By != "" && in.By != "call" && in.By != "message" {
		return RelayHops{}, objects.Errorf(http.StatusBadRequest, "bad_by", "by %q: want call or message", in.By)
	}
	count := func() (RelayHops, error) {
		n, _, err := objects.GetJSON[int64](ctx.Storage(), "hops")
		if err != nil {
			return RelayHops{}, err
		}
		return RelayHops{Hops: n + 1}, objects.PutJSON(ctx.Storage(), "hops", n+1)
	}
	var out RelayHops
	var err error
	if in.WriteFirst {
		if out, err = count(); err != nil {
			return RelayHops{}, err
		}
	}
	if len(in.Path) > 0 {
		next := ctx.Object("relay", in.Path[0])
		rest := RelayInput{Path: in.Path[1:], By: in.By, WriteFirst: in.WriteFirst}
		if in.By == "message" {
			err = next.Send("hop", rest)
		} else {
			err = next.Call(ctx, "hop", rest, nil)
		}
		if err != nil {
			return RelayHops{}, err
		}
	}
	if !in.WriteFirst {
		out, err = count()
	}
	return out, err
}

// Get returns the hops this object saw.
func (*relay) Get(ctx *objects.Ctx) (RelayHops, error) {
	n, _, err := objects.GetJSON[int64](ctx.Storage(), "hops")
	return RelayHops{Hops: n}, err
}
