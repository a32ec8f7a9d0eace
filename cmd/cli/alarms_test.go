package cli

import (
	"bytes"
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// TestAlarmsCommand: `strata alarms ls|dead|retry` against a real node.
func TestAlarmsCommand(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime, Alarms: n.Alarms})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	defer srv.Close()
	ref, err := n.Runtime.RefByName("kv", "later")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Runtime.SetAlarmAt(context.Background(), ref, "reminder", time.Now().Add(time.Hour), objects.Cause{}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		env := &Env{Classes: classes.All(), Stdout: &out, Stderr: &errOut}
		if err := Run(context.Background(), env, append([]string{"alarms", "--url", srv.URL}, args...)); err != nil {
			t.Fatalf("alarms %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	// The snapshot lists the alarm once the projector has applied it.
	deadline := time.Now().Add(5 * time.Second)
	for out := run("ls", "kv"); !strings.Contains(out, "later") || !strings.Contains(out, "reminder"); out = run("ls", "kv") {
		if time.Now().After(deadline) {
			t.Fatalf("alarms ls kv:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := run("ls", "counter"); strings.Contains(out, "reminder") {
		t.Fatalf("alarms ls counter lists kv's alarm:\n%s", out)
	}
	if out := run("dead"); strings.Count(out, "\n") != 1 {
		t.Fatalf("alarms dead on a node with none:\n%s", out)
	}
	if out := run("retry"); !strings.Contains(out, "0 dead alarms") {
		t.Fatalf("alarms retry: %s", out)
	}
}
