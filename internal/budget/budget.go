// Package budget bounds the bytes a queue holds: whoever queues takes
// bytes from the budget first, waiting while it is spent, and gives them
// back when the queued item is done with. Queues bounded only by count
// hold count × the largest item, which for events of up to 1 MiB is far
// more than a node should hold.
package budget

import (
	"context"
	"errors"
	"sync"
)

// ErrStopped is returned by Take when stop closes first.
var ErrStopped = errors.New("budget: stopped")

// Bytes is a byte budget. One item is always admitted when nothing is
// taken, however large, so an item larger than the budget still passes
// (alone). The zero value is not usable: use New.
type Bytes struct {
	mu    sync.Mutex
	max   int
	used  int
	freed chan struct{} // closed and replaced whenever bytes come back
}

// New returns a budget of max bytes (max > 0).
func New(max int) *Bytes {
	return &Bytes{max: max, freed: make(chan struct{})}
}

// Take waits until n bytes fit, then takes them. It gives up when ctx ends
// (returning ctx.Err()) or stop closes (ErrStopped).
func (b *Bytes) Take(ctx context.Context, n int, stop <-chan struct{}) error {
	for {
		b.mu.Lock()
		if b.used == 0 || b.used+n <= b.max {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-stop:
			return ErrStopped
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Give returns n bytes taken before.
func (b *Bytes) Give(n int) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.used < 0 {
		panic("budget: gave back more than was taken")
	}
	close(b.freed)
	b.freed = make(chan struct{})
}

// Used is the bytes taken now.
func (b *Bytes) Used() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
