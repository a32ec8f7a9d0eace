package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"time"
)

// procCPU is the CPU time this process has used so far, user and system,
// from /proc/self/stat (fields 14 and 15, in clock ticks of 1/100 s: the
// kernel's USER_HZ, fixed at 100 for /proc). ok is false where there is
// no /proc (the bench then reports no CPU figure).
func procCPU() (d time.Duration, ok bool) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	return parseProcStatCPU(data)
}

// userHz is the unit of /proc's tick counts.
const userHz = 100

// parseProcStatCPU reads utime + stime from a /proc/<pid>/stat line. The
// command name (field 2) is in parentheses and may hold spaces and
// parentheses itself, so fields are counted from the last ')'.
func parseProcStatCPU(data []byte) (time.Duration, bool) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(data[i+1:]) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, false
	}
	var ticks uint64
	for _, s := range f[11:13] { // fields 14 (utime) and 15 (stime)
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHz, true
}

// cpuMeter measures the process's CPU time over a window.
type cpuMeter struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuMeter {
	d, ok := procCPU()
	return cpuMeter{start: d, ok: ok}
}

// perRequest is the CPU time since start divided by requests, in
// microseconds; 0 when it cannot be told.
func (m cpuMeter) perRequest(requests int) float64 {
	end, ok := procCPU()
	if !m.ok || !ok || requests <= 0 {
		return 0
	}
	return float64(end-m.start) / float64(time.Microsecond) / float64(requests)
}

func formatCPU(us float64) string {
	if us <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", us)
}

// benchProfile serves net/http/pprof during a bench run (--pprof), so a
// workload's CPU, block and mutex profiles can be taken while it runs
// against the temporary server in this process.
type benchProfile struct {
	addr       string
	contention bool
}

func (p *benchProfile) register(fs *flag.FlagSet) {
	fs.StringVar(&p.addr, "pprof", "", "serve net/http/pprof on this loopback address during the run (e.g. 127.0.0.1:6061); off when empty")
	fs.BoolVar(&p.contention, "pprof-contention", false, "with --pprof: record block and mutex profiles too (costs some speed)")
}

func (p *benchProfile) start(w io.Writer) (stop func(), err error) {
	if p.addr == "" {
		if p.contention {
			return nil, &usageError{"--pprof-contention needs --pprof"}
		}
		return func() {}, nil
	}
	if err := validatePprofAddr(p.addr); err != nil {
		return nil, err
	}
	srv, err := startPprof(p.addr, slog.New(slog.NewTextHandler(w, nil)))
	if err != nil {
		return nil, err
	}
	if p.contention {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		runtime.SetMutexProfileFraction(10)
	}
	return func() {
		if p.contention {
			runtime.SetBlockProfileRate(0)
			runtime.SetMutexProfileFraction(0)
		}
		srv.stop()
	}, nil
}

// evictForCold makes W5's counter cold: on the temporary server it
// releases the object's activation and waits for it to end; a --url
// server evicts after its own --idle-timeout, which the caller must wait
// out (2 s are waited here).
func (b *bencher) evictForCold(ctx context.Context, name string) error {
	if b.node == nil {
		time.Sleep(2 * time.Second)
		return nil
	}
	ref, err := b.node.rt.RefByName("counter", name)
	if err != nil {
		return fmt.Errorf("W5: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := b.node.rt.Release(ctx, ref.Class, ref.ID); err != nil {
		return fmt.Errorf("W5: evict %s: %w", name, err)
	}
	if b.node.rt.Active(ref.Class, ref.ID) {
		return fmt.Errorf("W5: %s still active after its release", name)
	}
	return nil
}
