package log

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/strata-objects/strata/internal/benchcpu"
)

// Benchmarks of the write path against raw JetStream, all on a server
// that fsyncs before every ack (SyncInterval 0, the embedded default).
// The raw ones publish to a stream configured like a shard's log stream,
// with the same headers an append carries, so the difference is what
// Strata adds (or, for group commit, saves).

const (
	benchEventBytes = 200 // about the size of a small turn's event
	benchObjects    = 1000
)

// benchEvent is an event of about benchEventBytes.
func benchEvent(id ID, v uint64) *Event {
	e := testEvent(id, v, "")
	b, _ := Encode(e)
	e.Turns[0].Writes[0].Value = bytes.Repeat([]byte{'x'}, max(benchEventBytes-len(b)-2, 1))
	return e
}

func benchPayload(b *testing.B) []byte {
	data, err := Encode(benchEvent(objID(0), 1))
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// rawSetup opens a log and its raw scratch stream.
func rawSetup(b *testing.B) *Raw {
	b.Helper()
	l := openLog(b, startServer(b), Config{Shards: 1})
	raw, err := l.Raw(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { raw.Close(context.Background()) })
	return raw
}

func reportRate(b *testing.B, msgs int) {
	b.ReportMetric(float64(msgs)/b.Elapsed().Seconds(), "msgs/s")
}

func BenchmarkRawPublishSync(b *testing.B) {
	raw := rawSetup(b)
	data := benchPayload(b)
	last := make([]uint64, benchObjects)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		o := i % benchObjects
		seq, err := raw.PublishSync(ctx, RawSubject(o), data, last[o])
		if err != nil {
			b.Fatal(err)
		}
		last[o] = seq
	}
	reportRate(b, b.N)
}

func BenchmarkAppendSequential(b *testing.B) {
	l := openLog(b, startServer(b), Config{})
	ctx := context.Background()
	last := make([]uint64, benchObjects)
	events := make([]*Event, benchObjects)
	for i := range events {
		events[i] = benchEvent(objID(i), 0)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := benchcpu.Start(b)
	for i := range b.N {
		o := i % benchObjects
		e := *events[o]
		e.Version = uint64(i/benchObjects + 1)
		r, err := l.Append(ctx, &e, last[o])
		if err != nil {
			b.Fatal(err)
		}
		last[o] = r.Seq
	}
	cpu()
	reportRate(b, b.N)
}

// BenchmarkRawPublishAsync pipelines publishes over 1,000 subjects with
// ack futures, at most 1,024 unacknowledged (with an fsync per message
// acks come slowly, and more would stall the client).
func BenchmarkRawPublishAsync(b *testing.B) {
	raw := rawSetup(b)
	data := benchPayload(b)
	subjs, payloads := make([]string, b.N), make([][]byte, b.N)
	for i := range subjs {
		subjs[i], payloads[i] = RawSubject(i%benchObjects), data
	}
	b.ResetTimer()
	if err := raw.PublishAsync(context.Background(), subjs, payloads, 1024); err != nil {
		b.Fatal(err)
	}
	reportRate(b, b.N)
}

func BenchmarkRawAtomicBatch100(b *testing.B) { benchRawAtomicBatch(b, 100) }

// BenchmarkRawAtomicBatchSizes shows what one atomic batch costs by size:
// on one node each batch is staged in a file store of its own, which
// makes a fixed cost per batch.
func BenchmarkRawAtomicBatchSizes(b *testing.B) {
	for _, size := range []int{2, 5, 10, 30, 1000} {
		b.Run(fmt.Sprint("size=", size), func(b *testing.B) { benchRawAtomicBatch(b, size) })
	}
}

// benchRawAtomicBatch publishes batches of size messages to distinct
// subjects, each with its expectation, as the committer does.
func benchRawAtomicBatch(b *testing.B, size int) {
	raw := rawSetup(b)
	data := benchPayload(b)
	last := make([]uint64, benchObjects)
	subjs, payloads, expects := make([]string, size), make([][]byte, size), make([]uint64, size)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		for j := range size {
			o := (i*size + j) % benchObjects
			subjs[j], payloads[j], expects[j] = RawSubject(o), data, last[o]
		}
		seq, err := raw.PublishBatch(ctx, subjs, payloads, expects)
		if err != nil {
			b.Fatal(err)
		}
		for j := range size {
			last[(i*size+j)%benchObjects] = seq - uint64(size-1-j)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/batch")
	reportRate(b, b.N*size)
}

// BenchmarkAppendParallel1000Objects: 32 goroutines append to 1,000
// objects (each goroutine owns every 32nd object, so each object has one
// append in flight, as under activations). Node-wide group commit turns
// the concurrency into batches. raw-conc is the same load as plain
// JetStream publishes, each waiting for its ack, over one raw stream per
// shard on the same server: what the log is compared with.
func BenchmarkAppendParallel1000Objects(b *testing.B) {
	for _, shards := range []int{1, DefaultShards, 16} {
		l := openLog(b, startServer(b), Config{Shards: shards})
		raw, err := l.Raw(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		data := benchPayload(b)
		// Every run of a sub-benchmark (b.N grows) takes fresh objects.
		var runs atomic.Int64
		parallel := func(b *testing.B, publish func(o int, last uint64, version uint64) (uint64, error)) {
			const workers = 32
			base := int(runs.Add(1)) * 10 * benchObjects
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			b.ResetTimer()
			for w := range workers {
				wg.Go(func() {
					var last, version [benchObjects/workers + 1]uint64
					for n := 0; ; n++ {
						if next.Add(1) > int64(b.N) {
							return
						}
						k := n % len(last)
						o := w + k*workers
						if o >= benchObjects {
							k, o = 0, w
						}
						version[k]++
						seq, err := publish(base+o, last[k], version[k])
						if err != nil {
							errs <- err
							return
						}
						last[k] = seq
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			reportRate(b, b.N)
		}
		b.Run(fmt.Sprint("shards=", shards, "/raw-conc"), func(b *testing.B) {
			parallel(b, func(o int, last, _ uint64) (uint64, error) {
				return raw.PublishSync(context.Background(), RawStreamSubject(o%shards, o), data, last)
			})
		})
		b.Run(fmt.Sprint("shards=", shards, "/append"), func(b *testing.B) {
			before := l.Stats()
			parallel(b, func(o int, last, version uint64) (uint64, error) {
				r, err := l.Append(context.Background(), benchEvent(objID(o), version), last)
				return r.Seq, err
			})
			if s := l.Stats(); s.Batches > before.Batches {
				b.ReportMetric(float64(s.BatchedMessages-before.BatchedMessages)/float64(s.Batches-before.Batches), "msgs/batch")
			}
		})
	}
}

// BenchmarkDiskSyncedWrites measures the disk under the log, not Strata:
// n goroutines each append 200-byte O_SYNC writes to a file of its own in
// the test's temporary folder (put TMPDIR on the disk of the data folder).
// It shows whether the disk syncs several files at once, which is what
// lets the shards' streams, each storing its messages one at a time, add
// up (docs/benchmarks.md).
func BenchmarkDiskSyncedWrites(b *testing.B) {
	for _, n := range []int{1, 4, 16} {
		b.Run(fmt.Sprint("files=", n), func(b *testing.B) {
			dir := b.TempDir()
			files := make([]*os.File, n)
			for i := range files {
				f, err := os.OpenFile(filepath.Join(dir, fmt.Sprint(i)), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC, 0o600)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				files[i] = f
			}
			data := make([]byte, benchEventBytes)
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for _, f := range files {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := f.Write(data); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			reportRate(b, b.N)
		})
	}
}

// BenchmarkMessageID is the Nats-Msg-Id built for every append: one
// allocation.
func BenchmarkMessageID(b *testing.B) {
	subj := ObjectSubject(3, "counter", objID(1))
	b.ReportAllocs()
	for i := range b.N {
		_ = messageID(subj, "counter", uint64(i))
	}
}
