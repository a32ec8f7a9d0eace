package classes_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// README:begin
type Ledger struct {
	balance int64 // in memory while the object is active
	loaded  bool
}

type Amount struct {
	Cents int64 `json:"cents"`
}

func (l *Ledger) Deposit(ctx *objects.Ctx, in Amount) (Amount, error) {
	if in.Cents <= 0 {
		return Amount{}, objects.Errorf(400, "bad_amount", "deposit %d: must be positive", in.Cents)
	}
	if !l.loaded {
		bal, _, err := objects.GetJSON[int64](ctx.Storage(), "balance")
		if err != nil {
			return Amount{}, err
		}
		l.balance, l.loaded = bal, true
	}
	if err := objects.PutJSON(ctx.Storage(), "balance", l.balance+in.Cents); err != nil {
		return Amount{}, err
	}
	l.balance += in.Cents
	return Amount{Cents: l.balance}, nil
}

var LedgerClass = objects.Define("ledger", func() *Ledger { return &Ledger{} })

// README:end

type jsonCodec struct{}

func (jsonCodec) Decode(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

// TestReadmeClass runs the README's example class on a real node and checks
// that the README shows exactly this code.
func TestReadmeClass(t *testing.T) {
	n := testnode.Start(t, []*objects.Class{LedgerClass}, nil)
	ref, err := n.Runtime.RefByName("ledger", "acme")
	if err != nil {
		t.Fatal(err)
	}
	var out []byte
	for _, body := range []string{`{"cents":100}`, `{"cents":50}`} {
		out, err = n.Runtime.Call(context.Background(), ref, "deposit", []byte(body), jsonCodec{}, objects.Cause{})
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(out) != `{"cents":150}` {
		t.Fatalf("balance %s, want 150", out)
	}
	if _, err := n.Runtime.Call(context.Background(), ref, "deposit", []byte(`{"cents":-1}`), jsonCodec{}, objects.Cause{}); err == nil {
		t.Fatal("negative deposit accepted")
	}

	src, err := os.ReadFile("ledger_example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	code := string(src)
	code = code[strings.Index(code, "// README:begin\n")+len("// README:begin\n") : strings.Index(code, "\n// README:end")]
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+code+"```") {
		t.Fatalf("README.md does not show the example class as it is in ledger_example_test.go:\n%s", code)
	}
}
