package objects

import (
	"syscall"
	"testing"
	"time"
)

// processCPU is the CPU time (user + system) this process has used: the
// server's, the client's and the runtime's, since the embedded server
// runs in it. On a shared machine it moves far less than wall time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the process's CPU time since start per operation.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(processCPU(b)-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
}
