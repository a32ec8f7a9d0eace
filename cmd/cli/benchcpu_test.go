package cli

import (
	"testing"
	"time"
)

func TestParseProcStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis: fields count from
	// the last ')'. utime 250 and stime 50 ticks: 3 s.
	line := "4242 (str ata) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 100 0 0\n"
	d, ok := parseProcStatCPU([]byte(line))
	if !ok || d != 3*time.Second {
		t.Fatalf("got %s %v, want 3s true", d, ok)
	}
	for _, bad := range []string{"", "4242 (strata S 1", "4242 (strata) S 1 2 3", "4242 (s) S 1 2 3 4 5 6 7 8 9 10 x 50 0"} {
		if _, ok := parseProcStatCPU([]byte(bad)); ok {
			t.Errorf("%q: parsed", bad)
		}
	}
	if _, ok := procCPU(); !ok {
		t.Skip("no /proc/self/stat here")
	}
}
