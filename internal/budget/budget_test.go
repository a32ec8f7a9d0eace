package budget

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTakeWaitsForRoom(t *testing.T) {
	b := New(100)
	ctx := context.Background()
	if err := b.Take(ctx, 60, nil); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- b.Take(ctx, 60, nil) }()
	select {
	case err := <-got:
		t.Fatalf("took 60 more of 100 with 60 taken: %v", err)
	default:
	}
	b.Give(60)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	if b.Used() != 60 {
		t.Fatalf("used %d, want 60", b.Used())
	}
}

func TestOversizeItemPassesAlone(t *testing.T) {
	b := New(10)
	if err := b.Take(context.Background(), 1000, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if err := b.Take(ctx, 1, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("took 1 past an oversize item: %v", err)
	}
	stop := make(chan struct{})
	close(stop)
	if err := b.Take(context.Background(), 1, stop); !errors.Is(err, ErrStopped) {
		t.Fatalf("take after stop: %v", err)
	}
	b.Give(1000)
	if err := b.Take(context.Background(), 1, nil); err != nil {
		t.Fatal(err)
	}
}
