package objects

import (
	"context"
	"sort"
)

// MailboxStats are the requests waiting in the mailboxes of this node's
// activations (metrics), read one activation at a time, so not one
// instant's total.
type MailboxStats struct {
	Queued  int // requests waiting, all activations together
	Deepest int // the longest single mailbox
}

// Mailboxes reads the mailboxes' depths.
func (rt *Runtime) Mailboxes() MailboxStats {
	rt.mu.Lock()
	acts := make([]*activation, 0, len(rt.mu.acts))
	for _, a := range rt.mu.acts {
		acts = append(acts, a)
	}
	rt.mu.Unlock()
	var st MailboxStats
	for _, a := range acts {
		a.mu.Lock()
		n := len(a.mu.mailbox)
		a.mu.Unlock()
		st.Queued += n
		st.Deepest = max(st.Deepest, n)
	}
	return st
}

// ClassNames lists the registered classes, sorted.
func (rt *Runtime) ClassNames() []string {
	names := make([]string, 0, len(rt.classes))
	for n := range rt.classes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// LiveOf counts this node's live activations by class.
func (rt *Runtime) LiveOf() map[string]int {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	out := map[string]int{}
	for k := range rt.mu.acts {
		out[k.class]++
	}
	return out
}

// IsActive reports whether ref has a live activation on this node.
func (rt *Runtime) IsActive(ref Ref) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	_, ok := rt.mu.acts[actKey{class: ref.Class, id: ref.ID}]
	return ok
}

// Liveness is an object's life on the node that runs it, as the console
// shows it.
type Liveness struct {
	Active  bool `cbor:"1,keyasint,omitempty"` // a live activation
	Sockets int  `cbor:"2,keyasint,omitempty"` // WebSockets its hub holds open
	// Unknown: its node did not say (set by the asker, never sent).
	Unknown bool `cbor:"-"`
}

// Liveness reports each object's life on this node. A cluster's router
// answers the same question from each object's owner.
func (rt *Runtime) Liveness(_ context.Context, class string, ids []ID) []Liveness {
	out := make([]Liveness, len(ids))
	for i, id := range ids {
		ref := Ref{Class: class, ID: id}
		out[i] = Liveness{Active: rt.IsActive(ref), Sockets: rt.SocketsOf(ref)}
	}
	return out
}

// SocketsOf is the number of ref's WebSockets this node's hub holds open
// (in a cluster, the owner's hub holds every socket of its objects).
func (rt *Runtime) SocketsOf(ref Ref) int {
	set := rt.sockets.set(actKey{class: ref.Class, id: ref.ID}, false)
	if set == nil {
		return 0
	}
	set.mu.Lock()
	defer set.mu.Unlock()
	return len(set.mu.byID)
}
