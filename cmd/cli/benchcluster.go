package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/strata-objects/strata/cluster"
)

// runBenchCluster is `strata bench cluster`: W3 on one `serve` alone (R1)
// and on three `serve --cluster` processes (R3) in the same run, and on
// the cluster sequential increments sent to an object's owner (local)
// versus another node (forwarded over NATS request/reply), a synchronous
// call from an object to one on another node (C2), and the same
// for WebSocket round trips (benchcluster_ws.go). The servers
// are child processes of this binary on temporary folders; the raw
// limit is JetStream's sequential fsynced publish on an R1 log opened in
// this process with the same settings.
func runBenchCluster(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("bench cluster", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "bench cluster [flags]")
	var bc benchConfig
	fs.DurationVar(&bc.duration, "duration", 10*time.Second, "measured time per workload")
	fs.DurationVar(&bc.warmup, "warmup", 2*time.Second, "unmeasured time before each workload")
	fs.IntVar(&bc.clients, "clients", 32, "concurrent HTTP clients for W3 (spread over the gateways on R3)")
	fs.IntVar(&bc.objects, "objects", 1000, "objects for W3")
	fs.BoolVar(&bc.json, "json", false, "print results as JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if bc.duration <= 0 || bc.clients <= 0 || bc.objects <= 0 || bc.warmup < 0 {
		return &usageError{"--duration, --clients and --objects must be positive"}
	}
	logger := slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var results []benchResult
	add := func(r benchResult) {
		results = append(results, r)
		if bc.json {
			json.NewEncoder(env.Stdout).Encode(r)
		}
	}
	run := fmt.Sprint(time.Now().UnixNano())
	w3 := func(b *bencher, name, what string) benchResult {
		return b.load(ctx, name, what, bc.clients, func(_ int, rng *mrand.Rand) (string, string) {
			return fmt.Sprintf("/v1/objects/counter/%s-%s-%d/rpc/increment", name, run, rng.IntN(bc.objects)), `{"by":1}`
		})
	}

	// The raw limit: an R1 log in this process, fsync always.
	dir, err := os.MkdirTemp("", "strata-bench-raw-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ln, err := openLog(ctx, logConfig{dataDir: dir, fsync: "always", logger: logger})
	if err != nil {
		return err
	}
	limits, err := measureRawSync(ctx, ln.log, bc, env.Stderr)
	ln.close(context.Background())
	if err != nil {
		return err
	}
	add(benchResult{Workload: "raw-sync", What: "JetStream R1 publish+ack, sequential, fsync", PerSecond: limits.syncPerSec, P50Millis: limits.syncP50, P99Millis: limits.syncP99})
	ratio := func(r benchResult) benchResult {
		r.Limit, r.LimitPerSec, r.Ratio = "raw-sync", limits.syncPerSec, r.PerSecond/limits.syncPerSec
		return r
	}

	// R1: one server alone.
	r1, err := launchChildServer("r1", nil, "--idle-timeout", "10m")
	if err != nil {
		return err
	}
	if err := r1.wait(ctx, env.Stderr); err != nil {
		return err
	}
	b1 := &bencher{cfg: bc, base: r1.url, out: env.Stderr}
	add(ratio(w3(b1, "W3-R1", fmt.Sprintf("%d counters, %d clients, 1 node", bc.objects, bc.clients))))
	r1.stop()

	// R3: three nodes on this machine, each its own data and ports.
	nodes, err := startBenchCluster(ctx, env.Stderr)
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	if err != nil {
		return err
	}
	b3 := &bencher{cfg: bc, out: env.Stderr, client: &http.Client{Timeout: 30 * time.Second}}
	for _, n := range nodes {
		b3.bases = append(b3.bases, n.url)
	}
	add(ratio(w3(b3, "W3-R3", fmt.Sprintf("%d counters, %d clients over 3 gateways", bc.objects, bc.clients))))

	// Local versus forwarded: objects placed by asking node 1 which node
	// ran their turn (the Strata-Node header), then one client on node 1.
	b3.base = nodes[0].url
	local, remote, err := b3.ownedBy(ctx, "counter", "fw-"+run, nodes[0].name, 60)
	if err != nil {
		return err
	}
	b3.bases = nil
	seq := func(name, what string, objs []string) benchResult {
		return b3.load(ctx, name, what, 1, func(_ int, rng *mrand.Rand) (string, string) {
			return "/v1/objects/counter/" + objs[rng.IntN(len(objs))] + "/rpc/increment", `{"by":1}`
		})
	}
	add(ratio(seq("R3-local", fmt.Sprintf("1 client, %d objects owned by the node asked", len(local)), local)))
	add(ratio(seq("R3-fwd", fmt.Sprintf("1 client, %d objects owned by other nodes", len(remote)), remote)))

	// C2: a synchronous call to an object on another node, through node 1
	// (benchcalls.go): callers owned by node 1, callees by the others.
	callers, callees, err := b3.ownedBy(ctx, "relay", "c2-"+run, nodes[0].name, callPairs)
	if err != nil {
		return err
	}
	for _, r := range b3.callPairRows(ctx, "C2", "1 client, HTTP hop, relay on another node", "1 client, hop calling a relay on another node", callers, callees) {
		add(r)
	}

	// WebSocket round trips through node 1, local and forwarded
	// (benchcluster_ws.go).
	localRoom, remoteRoom, err := b3.roomsOwnedBy(ctx, "ws-"+run, nodes[0].name)
	if err != nil {
		return err
	}
	for _, w := range []struct {
		name, what, room string
		ping             bool
	}{
		{"WS-ping-l", "1 socket, ping→pong, room owned by the node asked", localRoom, true},
		{"WS-ping-f", "1 socket, ping→pong, room owned by another node", remoteRoom, true},
		{"WS-post-l", "1 socket, post→broadcast, room on the node asked", localRoom, false},
		{"WS-post-f", "1 socket, post→broadcast, room on another node", remoteRoom, false},
	} {
		r, err := b3.wsRoundTrips(ctx, w.name, w.what, w.room, w.ping)
		if err != nil {
			return err
		}
		add(r)
	}
	if !bc.json {
		printTable(env.Stdout, results)
	}
	return nil
}

// startBenchCluster starts three `serve --cluster` children that route to
// each other on free ports, with a random NATS password in their
// environment, and waits until all three serve.
func startBenchCluster(ctx context.Context, logTo io.Writer) ([]*childServer, error) {
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	env := []string{"STRATA_NATS_PASSWORD=" + hex.EncodeToString(pw)}
	var routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		routes = append(routes, l.Addr().String())
		l.Close()
	}
	var nodes []*childServer
	for i, r := range routes {
		name := fmt.Sprintf("n%d", i+1)
		n, err := launchChildServer(name, env, "--idle-timeout", "10m", "--cluster", "--node-name", name,
			"--cluster-listen", r, "--routes", strings.Join(routes, ","))
		if err != nil {
			return nodes, err
		}
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		if err := n.wait(ctx, logTo); err != nil {
			return nodes, err
		}
	}
	return nodes, waitLeased(ctx, nodes)
}

// waitLeased waits until every node lists them all and holds its
// membership lease (a majority's acks of its beats), so that the first
// requests are not refused with no_lease while the nodes learn of each
// other.
func waitLeased(ctx context.Context, nodes []*childServer) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		ready := 0
		for _, n := range nodes {
			resp, err := http.Get(n.url + "/v1/cluster")
			if err != nil {
				continue
			}
			var v struct {
				Leased bool              `json:"leased"`
				Nodes  []json.RawMessage `json:"nodes"`
			}
			err = json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if err == nil && v.Leased && len(v.Nodes) == len(nodes) {
				ready++
			}
		}
		if ready == len(nodes) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench cluster: %d of %d nodes hold their lease and see all after 60s", ready, len(nodes))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ownedBy sends one request to objects prefix-0, prefix-1, ... of class
// (counter: increment by 1; relay: a hop) through b.base until it has want
// objects whose turn ran on node and want that ran elsewhere, as the
// Strata-Node response header says.
func (b *bencher) ownedBy(ctx context.Context, class, prefix, node string, want int) (local, remote []string, err error) {
	path, body := "/rpc/increment", `{"by":1}`
	if class == "relay" {
		path, body = "/rpc/hop", `{}`
	}
	for i := 0; len(local) < want || len(remote) < want; i++ {
		if i > 100*want {
			return nil, nil, fmt.Errorf("placement: %d local, %d remote objects after %d tries", len(local), len(remote), i)
		}
		name := fmt.Sprintf("%s-%d", prefix, i)
		ran, err := b.postNode(ctx, b.base, "/v1/objects/"+class+"/"+name+path, body, cluster.NodeHeader)
		switch {
		case err != nil:
			return nil, nil, fmt.Errorf("placement: %w", err)
		case ran == "":
			return nil, nil, fmt.Errorf("placement: %s: no %s header", name, cluster.NodeHeader)
		case ran == node:
			if len(local) < want {
				local = append(local, name)
			}
		default:
			if len(remote) < want {
				remote = append(remote, name)
			}
		}
	}
	return local, remote, nil
}
