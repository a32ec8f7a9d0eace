package log

import (
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
)

// Node-to-node messages that need no answer: core NATS publish and
// subscribe, the transport of WebSocket frames between the node that holds
// a client's socket and the node that owns its object. Core NATS delivers
// at most once, and in order from one publisher's connection to one
// subscription: callers that must notice a loss number their messages.

const (
	// subPendingMsgsMax and subPendingBytesMax bound what waits for one
	// subscription's handler; past them NATS drops messages (a slow
	// consumer), which numbered messages reveal as gaps.
	subPendingMsgsMax  = 1 << 20
	subPendingBytesMax = 256 << 20
)

// Publish sends data to subject without waiting for a receiver.
func (l *Log) Publish(subject string, data []byte) error {
	if l.closed() {
		return ErrClosed
	}
	if err := l.nc.Publish(subject, data); err != nil {
		return fmt.Errorf("log: publish %s: %w", subject, err)
	}
	return nil
}

// Subscription is a running Subscribe.
type Subscription struct {
	sub *nats.Subscription
	mu  struct {
		sync.Mutex // held while the handler runs
		stopped    bool
	}
}

// Subscribe calls fn with each message published to subject, one at a
// time, in the order they arrive, until Stop. fn must not block: it holds
// up every later message.
func (l *Log) Subscribe(subject string, fn func(data []byte)) (*Subscription, error) {
	if l.closed() {
		return nil, ErrClosed
	}
	s := &Subscription{}
	sub, err := l.nc.Subscribe(subject, func(m *nats.Msg) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if !s.mu.stopped {
			fn(m.Data)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("log: subscribe %s: %w", subject, err)
	}
	sub.SetPendingLimits(subPendingMsgsMax, subPendingBytesMax)
	s.sub = sub
	// Publishers on other servers learn of the interest shortly after the
	// local server does (Serve says the same).
	if err := l.nc.Flush(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("log: subscribe %s: %w", subject, err)
	}
	return s, nil
}

// Stop ends the subscription and returns once no handler runs; fn is not
// called again.
func (s *Subscription) Stop() {
	s.sub.Unsubscribe()
	s.mu.Lock()
	s.mu.stopped = true
	s.mu.Unlock()
}
