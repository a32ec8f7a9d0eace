package projector

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
)

// badgerLogger sends Badger's warnings and errors to slog; its chatty info
// and debug lines are dropped. An error is also the projector's health:
// Badger reports a failed write to its files (a memtable flush it retries
// forever) only here.
type badgerLogger struct {
	l      *slog.Logger
	health *health
}

func (b badgerLogger) Errorf(f string, args ...any) {
	msg := "badger: " + strings.TrimSpace(fmt.Sprintf(f, args...))
	b.l.Error(msg)
	b.health.badger.CompareAndSwap(nil, &msg) // the first says most
	if strings.Contains(msg, "cannot create new mem table") || strings.Contains(msg, "While opening memtable") {
		b.health.noMemtable.CompareAndSwap(nil, &msg)
	}
}
func (b badgerLogger) Warningf(f string, args ...any) {
	b.l.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, args...)))
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

// health is what the projector knows of its own failures.
type health struct {
	badger atomic.Pointer[string] // Badger's first error: the snapshot cannot be written
	apply  atomic.Pointer[string] // the last apply's failure; cleared by a success
	// noMemtable: Badger could not create a memtable and may hold none
	// (broken).
	noMemtable atomic.Pointer[string]
}

// ErrUnhealthy is Health's error: the snapshot is not being written.
var ErrUnhealthy = errors.New("projector: snapshot not written")

// broken is non-nil once Badger has reported that it could not create a
// memtable: from then on the projector touches Badger no more. Badger may have lost
// its memtable (v4.9.6, when it cannot create a memtable's file, leaves
// none, and its next read or write dereferences nil: a panic that killed
// the node in TestUnwritableSnapshot), and the node is unhealthy until a
// restart anyway (Health): writes are refused, and reads of the snapshot
// fail with this error instead of crashing.
func (p *Projector) broken() error {
	if m := p.health.noMemtable.Load(); m != nil {
		return fmt.Errorf("%w: %s", ErrUnhealthy, *m)
	}
	return nil
}

// Health is nil while the snapshot is written, else an ErrUnhealthy that
// says why. Badger's own errors stay until a restart (its failed memtable
// flushes are retried forever); an apply failure lasts until an apply
// succeeds.
func (p *Projector) Health() error {
	if m := p.health.badger.Load(); m != nil {
		return fmt.Errorf("%w: %s", ErrUnhealthy, *m)
	}
	if m := p.health.apply.Load(); m != nil {
		return fmt.Errorf("%w: %s", ErrUnhealthy, *m)
	}
	return nil
}
