package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/strata-objects/strata/internal/testport"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testCluster is n `strata serve --cluster` processes on 127.0.0.1, each
// with its own data folder and fixed ports (picked free at start), so a
// node restarts with the same name, data, route, NATS and HTTP addresses.
type testCluster struct {
	t     *testing.T
	extra []string
	env   []string
	nodes []*clusterNode
	mu    sync.Mutex // guards each node's p
}

type clusterNode struct {
	name              string
	dir               string
	http, nats, route int
	p                 *proc    // nil while down
	own               []string // this node's own flags, before the cluster's extra
	// host and routeHost are its HTTP and route addresses ("": 127.0.0.1),
	// netns the network namespace it runs in ("": the test's own).
	host, routeHost, netns string
	past                   string // the output of its earlier runs (guarded by mu)
}

// Cluster timing of the tests: a dead node is dropped from the membership
// 1.5 s after its last heartbeat.
const (
	testHeartbeat = 250 * time.Millisecond
	testNodeTTL   = 1500 * time.Millisecond
	// clusterUpTimeout bounds a cluster's forming (JetStream's meta leader
	// election, R3 stream creation) on a loaded machine.
	clusterUpTimeout = 2 * time.Minute
)

// testClusterPassword is the shared NATS credential of test clusters.
const testClusterPassword = "integration-cluster-secret"

// startCluster starts n nodes, every one with extra flags appended, and
// waits until each node's GET /v1/cluster lists n live nodes.
func startCluster(t *testing.T, n int, extra ...string) *testCluster {
	t.Helper()
	return startClusterNodes(t, make([][]string, n), extra...)
}

// startClusterNodes starts len(own) nodes: node i gets own[i]'s flags,
// then extra.
func startClusterNodes(t *testing.T, own [][]string, extra ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, extra: extra, env: []string{"STRATA_NATS_PASSWORD=" + testClusterPassword}}
	for i := range own {
		c.nodes = append(c.nodes, &clusterNode{
			name: fmt.Sprintf("n%d", i+1), dir: filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i+1)),
			http: testport.Free(t), nats: testport.Free(t), route: testport.Free(t), own: own[i],
		})
	}
	c.start()
	return c
}

// startClusterIn starts one node in each of lab's namespaces, routes on
// the lab's route bridge, HTTP on its client bridge.
func startClusterIn(t *testing.T, lab *netLab, extra ...string) *testCluster {
	t.Helper()
	// The nodes listen on addresses of the lab's own namespaces, which
	// turns tokens on by default; this test is about partitions, and its
	// clients send none.
	extra = append([]string{"--auth=off", "--insecure-no-auth"}, extra...)
	c := &testCluster{t: t, extra: extra, env: []string{"STRATA_NATS_PASSWORD=" + testClusterPassword}}
	for i := range lab.nodes {
		c.nodes = append(c.nodes, &clusterNode{
			name: fmt.Sprintf("n%d", i+1), dir: filepath.Join(t.TempDir(), fmt.Sprintf("n%d", i+1)),
			http: 8080, nats: 4222, route: 6222, // each namespace has its own ports
			host: lab.HTTPIP(i), routeHost: lab.RouteIP(i), netns: lab.Netns(i),
		})
	}
	c.start()
	return c
}

// start launches every node and waits until each lists them all live.
func (c *testCluster) start() {
	t := c.t
	t.Helper()
	strataBinary(t)
	start := time.Now()
	n := len(c.nodes)
	// All at once: a node's streams are created only once a quorum of
	// servers has joined, so one alone never answers.
	for i := range c.nodes {
		c.launch(i)
	}
	for i, nd := range c.nodes {
		if err := nd.p.waitServing(clusterUpTimeout); err != nil {
			t.Fatalf("node %d (%s): %v", i, nd.name, err)
		}
	}
	c.WaitLive(t, n)
	t.Logf("%d-node cluster up in %s", n, time.Since(start).Round(time.Millisecond))
}

func (c *testCluster) routes() string {
	var r []string
	for _, nd := range c.nodes {
		r = append(r, net.JoinHostPort(orLoopback(nd.routeHost), fmt.Sprint(nd.route)))
	}
	return strings.Join(r, ",")
}

// launch starts node i's process without waiting for it.
func (c *testCluster) launch(i int) {
	nd := c.nodes[i]
	args := []string{
		"--cluster", "--node-name", nd.name,
		"--http", net.JoinHostPort(orLoopback(nd.host), fmt.Sprint(nd.http)),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", nd.nats),
		"--cluster-listen", net.JoinHostPort(orLoopback(nd.routeHost), fmt.Sprint(nd.route)),
		"--routes", c.routes(),
		"--heartbeat", testHeartbeat.String(), "--node-ttl", testNodeTTL.String(),
	}
	args = append(append(args, nd.own...), c.extra...)
	p := launchIn(c.t, c.env, nd.netns, nd.dir, args...)
	c.mu.Lock()
	nd.p = p
	c.mu.Unlock()
}

// Name is node i's --node-name: n1, n2, ...
func (c *testCluster) Name(i int) string { return c.nodes[i].name }

// Len is the number of nodes, running or not.
func (c *testCluster) Len() int { return len(c.nodes) }

// Index is the index of the node named name, -1 if none.
func (c *testCluster) Index(name string) int {
	for i, nd := range c.nodes {
		if nd.name == name {
			return i
		}
	}
	return -1
}

// URL is node i's gateway base URL, "" while it is down.
func (c *testCluster) URL(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nodes[i].p == nil {
		return ""
	}
	return "http://" + net.JoinHostPort(orLoopback(c.nodes[i].host), fmt.Sprint(c.nodes[i].http))
}

func orLoopback(host string) string {
	if host == "" {
		return "127.0.0.1"
	}
	return host
}

// Logs is node i's output so far (of its current or last run).
func (c *testCluster) Logs(i int) string {
	c.mu.Lock()
	p := c.nodes[i].p
	c.mu.Unlock()
	if p == nil {
		return ""
	}
	return p.output()
}

// AllLogs is node i's output over all its runs, each run's after a line
// naming it.
func (c *testCluster) AllLogs(i int) string {
	c.mu.Lock()
	past, p := c.nodes[i].past, c.nodes[i].p
	c.mu.Unlock()
	if p != nil {
		past += "--- current run\n" + p.output()
	}
	return past
}

// Kill sends node i SIGKILL and waits for it to exit.
func (c *testCluster) Kill(i int) {
	c.mu.Lock()
	p := c.nodes[i].p
	c.nodes[i].p = nil
	c.mu.Unlock()
	if p != nil {
		p.kill()
		c.mu.Lock()
		c.nodes[i].past += "--- run ended by SIGKILL\n" + p.output()
		c.mu.Unlock()
	}
}

// Restart starts node i again with the same name, data folder and ports,
// and waits until its gateway answers (not until it is live: WaitLive).
func (c *testCluster) Restart(i int) {
	c.t.Helper()
	nd := c.nodes[i]
	if c.URL(i) != "" {
		c.t.Fatalf("Restart(%d): %s is running", i, nd.name)
	}
	for _, port := range []int{nd.http, nd.nats, nd.route} {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			c.t.Fatalf("Restart(%d): %s's port %d is taken by another process, cannot restart on the same address: %v", i, nd.name, port, err)
		}
		ln.Close()
	}
	c.launch(i)
	if err := nd.p.waitServing(clusterUpTimeout); err != nil {
		c.t.Fatalf("Restart(%d) (%s): %v", i, nd.name, err)
	}
}

// clusterView is GET /v1/cluster.
type clusterView struct {
	Mode   string `json:"mode"`
	Node   string `json:"node"`
	Leased bool   `json:"leased"`
	Nodes  []struct {
		Name    string `json:"name"`
		HTTP    string `json:"http"`
		State   string `json:"state"`
		Objects int    `json:"objects"`
	} `json:"nodes"`
	Stats map[string]uint64 `json:"stats"`
}

// Status is node i's GET /v1/cluster.
func (c *testCluster) Status(i int) (clusterView, error) {
	var v clusterView
	return v, c.getAdmin(i, "/v1/cluster", &v)
}

// Raft is node i's GET /v1/cluster/raft.
func (c *testCluster) Raft(i int) (raftView, error) {
	var v raftView
	return v, c.getAdmin(i, "/v1/cluster/raft", &v)
}

// getAdmin GETs path from node i, with the admin token when auth is on,
// and decodes a 200 into out.
func (c *testCluster) getAdmin(i int, path string, out any) error {
	base := c.URL(i)
	if base == "" {
		return fmt.Errorf("%s is down", c.nodes[i].name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return err
	}
	if tok := c.adminToken(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok) // nodes run with --auth=on
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// adminToken is the first admin token, from the data folder of whichever
// node made it; "" when auth is off.
func (c *testCluster) adminToken() string {
	for _, nd := range c.nodes {
		if b, err := os.ReadFile(filepath.Join(nd.dir, "admin.token")); err == nil {
			return strings.TrimSpace(string(b))
		}
	}
	return ""
}

// WaitLive waits until every running node lists want live nodes.
func (c *testCluster) WaitLive(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(clusterUpTimeout)
	for {
		var last []string
		ok := true
		for i := range c.nodes {
			if c.URL(i) == "" {
				continue
			}
			v, err := c.Status(i)
			// Up means serving: every node sees the others and holds its
			// membership lease.
			if err != nil || len(v.Nodes) != want || !v.Leased {
				ok = false
				last = append(last, fmt.Sprintf("%s: %d live, leased %v (%v)", c.nodes[i].name, len(v.Nodes), v.Leased, err))
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every node sees %d live nodes after %s: %s", want, clusterUpTimeout, strings.Join(last, "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pause stops node i's process (SIGSTOP) without killing it: to the
// others it looks dead, and it will not notice until Resume. It returns
// once every thread of the process is stopped: kill(2) returns before
// that, and on a loaded machine a thread went on for milliseconds (a
// request sent right after the signal was answered by the "paused" node).
func (c *testCluster) Pause(i int) {
	c.signal(i, syscall.SIGSTOP)
	c.mu.Lock()
	p := c.nodes[i].p
	c.mu.Unlock()
	if err := waitStopped(p.cmd.Process.Pid, 10*time.Second); err != nil {
		c.t.Fatalf("pause %s: %v", c.nodes[i].name, err)
	}
}

// waitStopped waits until every thread of process pid is in the stopped
// state ('T' in /proc/<pid>/task/<tid>/stat). Without /proc it returns at
// once.
func waitStopped(pid int, within time.Duration) error {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	deadline := time.Now().Add(within)
	for {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return nil // no /proc here
		}
		running := 0
		for _, task := range tasks {
			b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
			if err != nil {
				continue // the thread ended
			}
			// pid (comm) state ...: the state follows the last ')'.
			if j := strings.LastIndexByte(string(b), ')'); j < 0 || j+2 >= len(b) || (b[j+2] != 'T' && b[j+2] != 't') {
				running++
			}
		}
		if running == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d threads of process %d not stopped %s after SIGSTOP", running, pid, within)
		}
		time.Sleep(time.Millisecond)
	}
}

// Resume continues node i's process (SIGCONT) after Pause.
func (c *testCluster) Resume(i int) { c.signal(i, syscall.SIGCONT) }

func (c *testCluster) signal(i int, sig syscall.Signal) {
	c.t.Helper()
	c.mu.Lock()
	p := c.nodes[i].p
	c.mu.Unlock()
	if p == nil || p.startErr != nil {
		c.t.Fatalf("signal %v: %s is down", sig, c.nodes[i].name)
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		c.t.Fatalf("signal %v to %s: %v", sig, c.nodes[i].name, err)
	}
}

// recorder collects what concurrent clients record, in arrival order.
type recorder[T any] struct {
	mu    sync.Mutex
	items []T
}

func (r *recorder[T]) add(x T) {
	r.mu.Lock()
	r.items = append(r.items, x)
	r.mu.Unlock()
}

// snapshot copies what was recorded so far.
func (r *recorder[T]) snapshot() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.items)
}
