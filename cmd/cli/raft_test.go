package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestPrintRaft: strata cluster --raft's table names the meta leader,
// each stream's leader, "(electing)" for none, and stale peers; a node
// standing by says so and prints no table.
func TestPrintRaft(t *testing.T) {
	var out bytes.Buffer
	answer := `{"node":"n3","meta_leader":"","meta_size":3,"meta_peers":[{"name":"n1","current":false,"active_ms":0}],` +
		`"streams":[{"name":"STRATA_LOG_0","leader":"n3","replicas":[{"name":"n1","current":true,"active_ms":8765}]},{"name":"STRATA_LOG_1","leader":"","replicas":[]}]}`
	if err := printRaft(&Env{Stdout: &out}, []byte(answer)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{
		"as seen by n3: JetStream meta leader (none known), 3 servers",
		"n1 0ms not current",
		"STRATA_LOG_0  n3          n1 8765ms",
		"STRATA_LOG_1  (electing)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in:\n%s", want, got)
		}
	}
	out.Reset()
	if err := printRaft(&Env{Stdout: &out}, []byte(`{"node":"n3","standing_by":true}`)); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "as seen by n3: standing by"; !strings.HasPrefix(got, want) || strings.Contains(got, "GROUP") {
		t.Errorf("standing by printed as %q, want it to start %q and no table", got, want)
	}
	if err := printRaft(&Env{Stdout: &out}, []byte("not json")); err == nil {
		t.Error("an answer that is not JSON printed")
	}
}
