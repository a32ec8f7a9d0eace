// Package benchcpu reports a benchmark's process CPU time per operation.
//
// The figure is user + system time of the whole process (the embedded
// server's, the client's and the Go runtime's, since tests run them in
// one process). On a shared machine it moves far less than wall time,
// which mostly measures the other tenants.
package benchcpu

import (
	"syscall"
	"testing"
	"time"
)

// Now is the CPU time (user + system) this process has used.
func Now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Start begins measuring; the function it returns reports the CPU time
// since then per operation as cpu-µs/op. Call it where the timed loop
// ends (b.N is known by then).
func Start(b *testing.B) func() {
	start := Now()
	return func() {
		b.ReportMetric(float64(Now()-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
	}
}
