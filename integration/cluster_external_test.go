package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/strata-objects/strata/internal/testport"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/strata-objects/strata/log"
)

// externalNATS starts a three-server NATS cluster with JetStream in this
// test process, protected by the test credentials, and returns a client
// URL for each server: the "existing external NATS cluster" that
// `strata serve --cluster --nats-url` joins.
func externalNATS(t *testing.T) []string {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ports := []int{testport.Free(t), testport.Free(t), testport.Free(t)}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", p))
	}
	auth := log.Auth{User: "strata", Password: testClusterPassword}
	srvs := make([]*log.Server, len(ports))
	errs := make(chan error, len(ports))
	for i, p := range ports {
		go func() {
			srv, err := log.RunEmbedded(log.EmbeddedConfig{
				Dir: t.TempDir(), ServerName: fmt.Sprintf("ext%d", i+1), Logger: quiet, Auth: auth, Listen: true,
				Cluster: &log.ClusterConfig{Name: "external", Port: p, Routes: routes},
			})
			srvs[i] = srv
			errs <- err
		}()
	}
	for range ports {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	var urls []string
	for _, srv := range srvs {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			srv.Shutdown(ctx)
		})
		urls = append(urls, srv.ClientURL())
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, srv := range srvs {
		for srv.Routes() < len(srvs)-1 {
			if time.Now().After(deadline) {
				t.Fatalf("external NATS servers did not route to each other")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return urls
}

// TestClusterOnExternalNATS: two Strata nodes join an external NATS
// cluster with --nats-url (no embedded server, R3 streams on the external
// servers), see each other, forward requests to each object's owner, and a
// node with the wrong password cannot connect.
func TestClusterOnExternalNATS(t *testing.T) {
	urls := externalNATS(t)
	strataBinary(t)
	env := []string{"STRATA_NATS_PASSWORD=" + testClusterPassword}
	var nodes []*proc
	for i, name := range []string{"a", "b"} {
		p := launch(t, env, t.TempDir(), "--cluster", "--node-name", name, "--nats-url", urls[i],
			"--heartbeat", testHeartbeat.String(), "--node-ttl", testNodeTTL.String())
		nodes = append(nodes, p)
	}
	for _, p := range nodes {
		if err := p.waitServing(clusterUpTimeout); err != nil {
			t.Fatal(err)
		}
	}
	if out := nodes[0].output(); strings.Contains(out, "embedded NATS running") {
		t.Fatalf("a node with --nats-url started an embedded server:\n%s", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !extBothLive(nodes) {
		if time.Now().After(deadline) {
			t.Fatalf("the nodes do not see each other:\n%s\n%s", nodes[0].output(), nodes[1].output())
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Each counter is incremented through both nodes in turn; the turns
	// run on its owner, so both nodes answer with one sequence of values.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ranOn := map[string]int{}
	for o := range 8 {
		name := fmt.Sprintf("ext-%d", o)
		owner := ""
		for i := range 6 {
			via := nodes[i%2].url
			var out struct{ Value int64 }
			node, code, err := extCall(ctx, via, "counter", name, "increment", map[string]int{"by": 1}, &out)
			if err != nil {
				t.Fatalf("increment %s via node %d: %d %v", name, i%2, code, err)
			}
			if out.Value != int64(i+1) {
				t.Fatalf("increment %d of %s via node %d answered %d", i+1, name, i%2, out.Value)
			}
			if owner == "" {
				owner = node
			} else if node != owner {
				t.Fatalf("%s ran on %s and then on %s with no node change", name, owner, node)
			}
		}
		ranOn[owner]++
	}
	if ranOn["a"] == 0 || ranOn["b"] == 0 {
		t.Fatalf("8 objects all owned by one node: %v (placement does not spread, or forwarding is not used)", ranOn)
	}

	// The wrong password: the external servers refuse the connection and
	// the node exits with the reason.
	bad := launch(t, []string{"STRATA_NATS_PASSWORD=not-the-cluster-secret"}, t.TempDir(),
		"--cluster", "--node-name", "intruder", "--nats-url", urls[2])
	select {
	case <-bad.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("a node with the wrong password is still running:\n%s", bad.output())
	}
	if out := bad.output(); !strings.Contains(strings.ToLower(out), "authorization") {
		t.Fatalf("the refused node does not say why:\n%s", out)
	}
	if !extBothLive(nodes) {
		t.Fatalf("the cluster view changed after the intruder")
	}
}

// extBothLive: every node's GET /v1/cluster lists exactly the nodes, live.
func extBothLive(nodes []*proc) bool {
	for _, p := range nodes {
		resp, err := client.Get(p.url + "/v1/cluster")
		if err != nil {
			return false
		}
		var v clusterView
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
		// Live and leased: a node's lease needs a majority's acks of its
		// beats, which it gets only once the others know it.
		if err != nil || len(v.Nodes) != len(nodes) || !v.Leased {
			return false
		}
		for _, n := range v.Nodes {
			if n.State != "live" && n.State != "self" {
				return false
			}
		}
	}
	return true
}

// extCall is call that also returns the Strata-Node header: the node that
// ran the turn.
func extCall(ctx context.Context, base, class, name, method string, in, out any) (string, int, error) {
	body, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/v1/objects/%s/%s/rpc/%s", base, class, name, method), bytes.NewReader(body))
	if err != nil {
		return "", 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return "", resp.StatusCode, fmt.Errorf("%s %s/%s: %d %s %v", method, class, name, resp.StatusCode, strings.TrimSpace(string(b)), err)
	}
	return resp.Header.Get("Strata-Node"), resp.StatusCode, json.Unmarshal(b, out)
}
