package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// TestHistoryTrace: `strata history --trace relay c 1`, against a real
// node, prints the chain a→b→c that one request caused by calls, each
// object's turn under its caller with its cause and changes; --json
// prints the gateway's lines; an unknown version is an error.
func TestHistoryTrace(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	ref, err := n.Runtime.RefByName("relay", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Runtime.Call(context.Background(), ref, "hop", []byte(`{"path":["b","c"]}`), jsonCodec{}, objects.Cause{RequestID: "req-1"}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		env := &Env{Classes: classes.All(), Stdout: &out, Stderr: &errOut}
		err := Run(t.Context(), env, append([]string{"history", "--url", srv.URL}, args...))
		return out.String(), err
	}
	out, err := run("--trace", "relay", "c", "1")
	if err != nil {
		t.Fatalf("history --trace: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	want := []string{
		"relay/a .hop  (rpc, request req-1)",
		"    v1 ",
		"    call → relay/b .hop  (rpc, request req-1)",
		"        v1 ",
		"        call → relay/c .hop  (rpc, request req-1)  ← asked",
		"            v1 ",
	}
	if len(lines) != len(want) {
		t.Fatalf("history --trace printed %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Fatalf("line %d %q, want it to start %q:\n%s", i, lines[i], w, out)
		}
		if strings.HasPrefix(w, " ") && strings.HasSuffix(w, "v1 ") && !strings.HasSuffix(lines[i], "hops: (none) → 1") {
			t.Fatalf("line %d %q, want the change of hops:\n%s", i, lines[i], out)
		}
	}
	out, err = run("--trace", "--json", "relay", "a", "1")
	if err != nil || strings.Count(out, "\n") != 3 || !strings.Contains(out, `"link":"call"`) {
		t.Fatalf("history --trace --json: %v\n%s", err, out)
	}
	if _, err := run("--trace", "relay", "a", "7"); err == nil || !strings.Contains(err.Error(), "no version 7") {
		t.Fatalf("trace of a version the object lacks: %v", err)
	}
	if _, err := run("--trace", "relay", "a"); err == nil {
		t.Fatal("history --trace without a version: no error")
	}
}
