package jsclass

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/strata-objects/strata/internal/benchcpu"
	"github.com/strata-objects/strata/log"
)

const benchCounter = `import { DurableObject } from "strata";
export class Counter extends DurableObject {
  async increment(by = 1) {
    let v = ((await this.ctx.storage.get("value")) ?? 0) + by;
    await this.ctx.storage.put("value", v);
    return v;
  }
}
`

func benchCompiled(b *testing.B) (*Registry, *compiled) {
	r, err := New(Config{Classes: &log.Classes{}})
	if err != nil {
		b.Fatal(err)
	}
	script, err := Compile("counter.js", []byte(benchCounter))
	if err != nil {
		b.Fatal(err)
	}
	c, err := r.compile(&log.ClassVersion{Class: "counter", Version: 1, Code: []byte(script), Export: "Counter"})
	if err != nil {
		b.Fatal(err)
	}
	return r, c
}

// BenchmarkJSActivation: what a JavaScript counter's activation costs in
// the engine: a fresh goja runtime, the prelude, the module, the
// constructor, and its first increment (time per activation, and the heap
// each live one holds).
func BenchmarkJSActivation(b *testing.B) {
	r, c := benchCompiled(b)
	const keep = 200
	live := make([]*instance, 0, keep)
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	cpu := benchcpu.Start(b)
	for i := 0; i < b.N; i++ {
		in := &instance{reg: r, class: "counter", id: "x"}
		st := newReplayStore(map[string][]byte{}, nil, &replaySQL{ctx: context.Background()})
		if err := in.begin(c, st, newTurnEnv(time.Now())); err != nil {
			b.Fatal(err)
		}
		if _, err := in.callMethod("increment", []byte("[1]")); err != nil {
			b.Fatal(err)
		}
		in.end()
		if len(live) < keep {
			live = append(live, in)
		}
	}
	cpu()
	b.StopTimer()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if len(live) == keep {
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/keep, "heap-B/live-object")
	}
	runtime.KeepAlive(live)
}

// BenchmarkJSCounterTurn: one increment on a live JavaScript counter, in
// the engine only (scratch storage; no log, no HTTP).
func BenchmarkJSCounterTurn(b *testing.B) {
	r, c := benchCompiled(b)
	in := &instance{reg: r, class: "counter", id: "x"}
	st := newReplayStore(map[string][]byte{}, nil, &replaySQL{ctx: context.Background()})
	b.ResetTimer()
	cpu := benchcpu.Start(b)
	for i := 0; i < b.N; i++ {
		if err := in.begin(c, st, newTurnEnv(time.Now())); err != nil {
			b.Fatal(err)
		}
		if _, err := in.callMethod("increment", []byte("[1]")); err != nil {
			b.Fatal(err)
		}
		in.end()
	}
	cpu()
}
