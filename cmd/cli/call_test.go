package cli

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/objects"
)

// answerLoser stands between a client and a real gateway: it passes each
// request on, and for the first dropN requests it drops the gateway's
// answer (closing the client's connection), as a network failure after
// the node did the work would.
type answerLoser struct {
	t     *testing.T
	next  string
	mu    sync.Mutex
	dropN int
	keys  []string
}

func (p *answerLoser) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, p.next+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Errorf("proxy: %v", err)
		return
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	p.mu.Lock()
	p.keys = append(p.keys, r.Header.Get("Idempotency-Key"))
	drop := p.dropN > 0
	p.dropN--
	p.mu.Unlock()
	if drop {
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// TestCallRetriesWithKey: `strata call` sends an Idempotency-Key and
// retries with it when an answer is lost, and the increment happens once;
// without a key it does not retry, because the call may have run.
func TestCallRetriesWithKey(t *testing.T) {
	n := testnode.Start(t, classes.All(), nil)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime})
	if err != nil {
		t.Fatal(err)
	}
	node := httptest.NewServer(gw)
	defer node.Close()
	proxy := &answerLoser{t: t, next: node.URL, dropN: 2}
	front := httptest.NewServer(proxy)
	defer front.Close()
	version := func() uint64 {
		rec, err := n.Log.Last(context.Background(), "counter", objects.IDFromName("counter", "alice"))
		if err != nil {
			return 0
		}
		return rec.Event.Version
	}
	call := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		env := &Env{Classes: classes.All(), Stdout: &out, Stderr: &errOut}
		err := Run(context.Background(), env, append([]string{"call", "--url", front.URL}, args...))
		return out.String(), err
	}

	out, err := call("counter", "alice", "increment", `{"by":1}`)
	if err != nil || strings.TrimSpace(out) != `{"value":1}` {
		t.Fatalf("call through two lost answers: %q, %v", out, err)
	}
	proxy.mu.Lock()
	keys := proxy.keys
	proxy.mu.Unlock()
	if len(keys) != 3 || keys[0] == "" || keys[1] != keys[0] || keys[2] != keys[0] {
		t.Fatalf("the node saw keys %q, want one key three times", keys)
	}
	if v := version(); v != 1 {
		t.Fatalf("three attempts made %d events, want 1", v)
	}

	proxy.mu.Lock()
	proxy.dropN = 1
	proxy.mu.Unlock()
	if _, err := call("--idempotency-key", "none", "counter", "alice", "increment", `{"by":1}`); err == nil || !strings.Contains(err.Error(), "not retried") {
		t.Fatalf("a call without a key whose answer was lost: %v, want an error saying it was not retried", err)
	}
	if v := version(); v != 2 {
		t.Fatalf("the unkeyed call's lost attempt: log at v%d, want 2 (it ran)", v)
	}
	// A caller's own key: two runs of the command are one increment.
	for range 2 {
		if out, err := call("--idempotency-key", "order-7", "counter", "alice", "increment", `{"by":5}`); err != nil || strings.TrimSpace(out) != `{"value":7}` {
			t.Fatalf("call with order-7: %q, %v", out, err)
		}
	}
	if v := version(); v != 3 {
		t.Fatalf("log at v%d, want 3", v)
	}
}
