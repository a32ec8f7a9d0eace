package objects

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
)

// doBody runs fn as a turn of scratch object name, with a request body of
// the given size (the valueCodec ignores it; the mailbox counts it).
func (h *harness) doBody(name string, size int, fn func(c *Ctx, s *scratch) (any, error)) error {
	codec := &valueCodec{in: fnInput{fn}}
	_, err := h.rt.Call(context.Background(), h.ref("scratch", name), "do", make([]byte, size), codec, Cause{})
	return err
}

// evictedLog records the objects the Evicted hook reports.
type evictedLog struct {
	mu  sync.Mutex
	ids map[ID]int
}

func (e *evictedLog) hook(_ string, id ID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ids == nil {
		e.ids = map[ID]int{}
	}
	e.ids[id]++
}

func (e *evictedLog) count(id ID) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.ids[id]
}

// Past MaxActivations the least recently used idle activations are
// evicted; their storage stays.
func TestMaxActivationsEvictsLeastRecentlyUsed(t *testing.T) {
	var ev evictedLog
	const cap, objects = 3, 10
	h := newHarness(t, func(c *Config) {
		c.MaxActivations = cap
		c.Hooks.Evicted = ev.hook
	})
	name := func(i int) string { return fmt.Sprint("o", i) }
	for i := 0; i < objects; i++ {
		h.must(name(i), put("k", name(i)))
	}
	waitFor(t, "live activations down to the cap", func() bool { return h.rt.Stats().Live <= cap })
	for i := 0; i < objects; i++ {
		want := 1
		if i >= objects-cap {
			want = 0 // the most recently used stay
		}
		if got := ev.count(IDFromName("scratch", name(i))); got != want {
			t.Fatalf("%s evicted %d times, want %d", name(i), got, want)
		}
	}
	// Storage stays: an evicted object reads back what it wrote.
	for i := 0; i < objects; i++ {
		got := h.must(name(i), func(c *Ctx, _ *scratch) (any, error) {
			v, _, err := c.Storage().Get("k")
			return string(v), err
		})
		if got != name(i) {
			t.Fatalf("%s reads %q", name(i), got)
		}
	}
}

// An activation with a turn running or an append in flight is not
// evicted past the cap; it goes once idle, when asked again.
func TestMaxActivationsSparesBusyActivations(t *testing.T) {
	var ev evictedLog
	stall, stalled := make(chan struct{}), make(chan struct{}, 1)
	busyID := IDFromName("scratch", "busy")
	h := newHarness(t, func(c *Config) {
		c.MaxActivations = 1
		c.Hooks.Evicted = ev.hook
		c.Hooks.BeforeAppend = func(_ string, id ID, _ uint64) {
			if id == busyID {
				select {
				case stalled <- struct{}{}:
				default:
				}
				<-stall
			}
		}
	})
	var unstall sync.Once
	t.Cleanup(func() { unstall.Do(func() { close(stall) }) }) // before the harness closes
	done := make(chan error, 1)
	go func() { _, err := h.do("busy", put("k", "v")); done <- err }()
	<-stalled // the append of busy's turn is held in flight
	for i := 0; i < 5; i++ {
		h.must(fmt.Sprint("other", i), put("k", "v"))
	}
	// Busy stays past the cap; the others make way for the newest.
	waitFor(t, "the others evicted", func() bool { return h.rt.Stats().Live == 2 })
	if n := ev.count(busyID); n != 0 {
		t.Fatalf("busy evicted %d times with its append in flight", n)
	}
	unstall.Do(func() { close(stall) })
	if err := <-done; err != nil {
		t.Fatalf("busy's turn: %v", err)
	}
	h.must("later", put("k", "v")) // asks busy again, now idle
	waitFor(t, "busy evicted once idle", func() bool { return ev.count(busyID) == 1 })
	got := h.must("busy", func(c *Ctx, _ *scratch) (any, error) {
		v, _, err := c.Storage().Get("k")
		return string(v), err
	})
	if got != "v" {
		t.Fatalf("busy reads %q after its eviction", got)
	}
}

// The mailbox is bounded in bytes too, and an idle activation holds no
// mailbox slots.
func TestMailboxBoundedInBytes(t *testing.T) {
	const bytesMax = 64 << 10
	h := newHarness(t, func(c *Config) { c.MailboxBytesMax = bytesMax })
	started, release := make(chan struct{}), make(chan struct{})
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) }) // before the harness closes
	go h.do("busy", func(*Ctx, *scratch) (any, error) {
		close(started)
		<-release
		return nil, nil
	})
	<-started
	const body = 10 << 10
	fits := bytesMax / (body + requestOverheadBytes)
	var wg sync.WaitGroup
	results := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results <- h.doBody("busy", body, put("k", "v"))
		}()
	}
	waitFor(t, "the overflow to be refused", func() bool { return len(results) == 20-fits })
	released.Do(func() { close(release) })
	wg.Wait()
	close(results)
	var ok, overloaded int
	for err := range results {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, ErrOverloaded):
			overloaded++
		default:
			t.Fatal(err)
		}
	}
	if ok != fits || overloaded != 20-fits {
		t.Fatalf("%d completed and %d refused, want %d and %d", ok, overloaded, fits, 20-fits)
	}
	h.rt.mu.Lock()
	a := h.rt.mu.acts[actKey{"scratch", IDFromName("scratch", "busy")}]
	h.rt.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.mu.mailbox != nil || a.mu.mailboxBytes != 0 {
		t.Fatalf("idle activation holds a mailbox of %d slots, %d bytes", cap(a.mu.mailbox), a.mu.mailboxBytes)
	}
}
