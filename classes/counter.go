package classes

import (
	"math"

	"github.com/strata-objects/strata/objects"
)

// counter is a durable integer. Its value lives in storage under "value";
// the activation also keeps it in memory, so reads skip storage.
type counter struct {
	value  int64
	loaded bool
}

// CounterValue is what every counter method answers.
type CounterValue struct {
	Value int64 `json:"value"`
}

// IncrementInput says by how much; "by" defaults to 1.
type IncrementInput struct {
	By *int64 `json:"by"`
}

// Counter is the "counter" class: increment, get.
func Counter() *objects.Class {
	return objects.Define("counter", func() *counter { return &counter{} })
}

func (c *counter) load(ctx *objects.Ctx) error {
	if c.loaded {
		return nil
	}
	v, _, err := objects.GetJSON[int64](ctx.Storage(), "value")
	if err != nil {
		return err
	}
	c.value, c.loaded = v, true
	return nil
}

// Increment adds by (default 1) and returns the new value.
func (c *counter) Increment(ctx *objects.Ctx, in IncrementInput) (CounterValue, error) {
	if err := c.load(ctx); err != nil {
		return CounterValue{}, err
	}
	by := int64(1)
	if in.By != nil {
		by = *in.By
	}
	if by > 0 && c.value > math.MaxInt64-by || by < 0 && c.value < math.MinInt64-by {
		return CounterValue{}, objects.Errorf(400, "overflow", "counter would overflow: %d + %d", c.value, by)
	}
	next := c.value + by
	if err := objects.PutJSON(ctx.Storage(), "value", next); err != nil {
		return CounterValue{}, err
	}
	c.value = next // only after the write is staged: a failed turn leaves memory as it was
	return CounterValue{Value: next}, nil
}

// Get returns the value.
func (c *counter) Get(ctx *objects.Ctx) (CounterValue, error) {
	if err := c.load(ctx); err != nil {
		return CounterValue{}, err
	}
	return CounterValue{Value: c.value}, nil
}
