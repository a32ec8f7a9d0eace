package objects

import (
	"errors"
	"sync"
	"testing"
)

// TestMailboxBounded: while a turn runs, at most MailboxLen requests wait;
// the rest are refused at once with ErrOverloaded, and every admitted one
// completes.
func TestMailboxBounded(t *testing.T) {
	const mailbox = 4
	h := newHarness(t, func(c *Config) { c.MailboxLen = mailbox })
	started, release := make(chan struct{}), make(chan struct{})
	go h.do("busy", func(*Ctx, *scratch) (any, error) {
		close(started)
		<-release
		return nil, nil
	})
	<-started
	var wg sync.WaitGroup
	results := make(chan error, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := h.do("busy", put("k", "v"))
			results <- err
		}()
	}
	waitFor(t, "the overflow to be refused", func() bool { return len(results) == 20-mailbox })
	close(release)
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
	if ok != mailbox || overloaded != 20-mailbox {
		t.Fatalf("%d completed and %d refused, want %d and %d", ok, overloaded, mailbox, 20-mailbox)
	}
}
