package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// TestHistoryFollow: `strata history --follow` prints the object's
// history, then each new event of that object (and no other) as it is
// committed, until its context ends, and then returns cleanly.
func TestHistoryFollow(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	defer gw.CloseStreams()
	put := func(name string, i int) {
		t.Helper()
		ref, err := n.Runtime.RefByName("kv", name)
		if err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf(`{"key":"k","value":%d}`, i)
		if _, err := n.Runtime.Call(context.Background(), ref, "put", []byte(body), jsonCodec{}, objects.Cause{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 3; i++ {
		put("f", i)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var errOut bytes.Buffer
	done := make(chan error, 1)
	go func() {
		env := &Env{Classes: classes.All(), Stdout: pw, Stderr: &errOut}
		done <- Run(ctx, env, []string{"history", "--url", srv.URL, "--json", "--follow", "kv", "f"})
		pw.Close()
	}()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() (v uint64, value int) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("history --follow ended early: %s", errOut.String())
			}
			var e struct {
				Version uint64
				Turns   []struct{ Changes []struct{ New int } }
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			return e.Version, e.Turns[0].Changes[0].New
		case <-time.After(10 * time.Second):
			t.Fatal("no line from history --follow")
		}
		return 0, 0
	}
	for want := uint64(1); want <= 3; want++ {
		if v, val := next(); v != want || val != int(want) {
			t.Fatalf("history line: v%d value %d, want v%d", v, val, want)
		}
	}
	for i := 4; i <= 6; i++ {
		put("other", i) // another object: not followed
		put("f", i)
		if v, val := next(); v != uint64(i) || val != i {
			t.Fatalf("followed line: v%d value %d, want v%d value %d", v, val, i, i)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("history --follow after interrupt: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("history --follow did not stop when interrupted")
	}
	var out bytes.Buffer
	env := &Env{Classes: classes.All(), Stdout: &out, Stderr: &out}
	if err := Run(context.Background(), env, []string{"history", "--url", srv.URL, "--follow", "--limit", "2", "kv", "f"}); err == nil {
		t.Fatal("--follow with --limit was accepted")
	}
}

type jsonCodec struct{}

func (jsonCodec) Decode(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }
