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
)

// TestOutboxCommand: `strata outbox ls|dead|retry` against a real node,
// and its usage errors.
func TestOutboxCommand(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime, Outbox: n.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	run := func(args ...string) (string, error) {
		t.Helper()
		var out, errOut bytes.Buffer
		env := &Env{Classes: classes.All(), Stdout: &out, Stderr: &errOut}
		err := Run(context.Background(), env, append([]string{"outbox", "--url", srv.URL}, args...))
		return out.String(), err
	}
	if out, err := run("ls", "account", "a"); err != nil || !strings.HasPrefix(out, "SENDER") || strings.Count(out, "\n") != 1 {
		t.Fatalf("outbox ls of an object with no messages: %v\n%s", err, out)
	}
	if out, err := run("dead"); err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("outbox dead on a node with none: %v\n%s", err, out)
	}
	if out, err := run("retry"); err != nil || !strings.Contains(out, "0 dead letters") {
		t.Fatalf("outbox retry: %v %s", err, out)
	}
	for _, args := range [][]string{{}, {"ls"}, {"ls", "account"}, {"nope"}, {"dead", "x"}} {
		if _, err := run(args...); err == nil {
			t.Fatalf("outbox %v: no usage error", args)
		}
	}
	if _, err := run("ls", "nope", "a"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("outbox ls of an unknown class: %v", err)
	}
}
