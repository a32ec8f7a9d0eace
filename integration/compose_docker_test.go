package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/strata-objects/strata/internal/testport"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The tests below run the repository's docker-compose.yml in a real
// Docker Engine: the image is docker-compose.scratch.yml's (FROM scratch,
// around a static binary built here, so no registry is needed), each test
// has its own compose project, image tag and free host ports, drives the
// cluster from the host through the published ports with the admin token
// read from a node's volume, and removes its containers, volumes and image.
// Where no Docker Engine answers (`docker info` fails) they are skipped.

// dockerCluster is one compose project of the three nodes.
type dockerCluster struct {
	t       *testing.T
	project string
	env     []string
	ports   [3]int
	token   string
	mu      sync.Mutex
	down    [3]bool // a node the test killed, until it restarts
}

var (
	scratchOnce sync.Once
	scratchErr  error
	// scratch is the static binary's build, started by TestMain for a run
	// of the whole package, else by the first compose test.
	scratch *scratchBuild
)

// startScratchEarly starts the compose tests' build of the binary at once
// when the whole package runs (TestMain), at the lowest CPU priority, and
// returns what stops it. It shares no compiled package with the other
// builds (CGO_ENABLED=0, -trimpath), so on a cold build cache it takes
// about two minutes of both cores: begun at the start, it compiles on
// what the sequential tests leave idle, instead of in front of the
// compose tests, which run last.
func startScratchEarly() (stop func()) {
	if testing.Short() || flag.Lookup("test.run").Value.String() != "" || exec.Command("docker", "info").Run() != nil {
		return func() {}
	}
	scratch = startScratchBuild()
	return scratch.stop
}

// scratchBuild is one `go build` of the static binary into build/scratch.
type scratchBuild struct {
	cmd  *exec.Cmd
	out  bytes.Buffer
	err  error
	done chan struct{} // closed when the build ended; err is set
}

func startScratchBuild() *scratchBuild {
	b := &scratchBuild{done: make(chan struct{})}
	dir := filepath.Join("..", "build", "scratch")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.err = err
		close(b.done)
		return b
	}
	args := []string{"go", "build", "-trimpath", "-o", filepath.Join(dir, "strata"), "../cmd/strata"}
	if nice, err := exec.LookPath("nice"); err == nil {
		args = append([]string{nice, "-n", "19"}, args...)
	}
	b.cmd = exec.Command(args[0], args[1:]...)
	b.cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	b.cmd.Stdout, b.cmd.Stderr = &b.out, &b.out
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // stop ends the compiler too
	if err := b.cmd.Start(); err != nil {
		b.err = fmt.Errorf("go build (CGO_ENABLED=0): %w", err)
		close(b.done)
		return b
	}
	go func() {
		if err := b.cmd.Wait(); err != nil {
			b.err = fmt.Errorf("go build (CGO_ENABLED=0): %w\n%s", err, b.out.Bytes())
		}
		close(b.done)
	}()
	return b
}

// wait returns the build's error once it ended.
func (b *scratchBuild) wait() error {
	<-b.done
	return b.err
}

// stop ends a build still running (the package's tests ended first) and
// waits for it.
func (b *scratchBuild) stop() {
	select {
	case <-b.done:
	default:
		if b.cmd.Process != nil {
			syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		}
		<-b.done
	}
}

// buildScratchContext puts what Dockerfile.scratch copies into
// build/scratch: a static binary, the host's CA certificates and the empty
// folders that become /data and /secrets.
func buildScratchContext(t *testing.T) {
	t.Helper()
	strataBinary(t) // reads the sources, so a change reruns these tests
	scratchOnce.Do(func() {
		dir := filepath.Join("..", "build", "scratch")
		for _, d := range []string{"data", "secrets"} {
			if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
				scratchErr = err
				return
			}
		}
		if scratch == nil {
			scratch = startScratchBuild()
		}
		if scratchErr = scratch.wait(); scratchErr != nil {
			return
		}
		ca, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
		if err != nil {
			scratchErr = fmt.Errorf("the host's CA certificates: %w", err)
			return
		}
		scratchErr = os.WriteFile(filepath.Join(dir, "ca-certificates.crt"), ca, 0o644)
	})
	if scratchErr != nil {
		t.Fatal(scratchErr)
	}
}

// composeCommand is how compose runs here: the docker CLI plugin, else
// the standalone docker-compose.
func composeCommand() []string {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	return []string{"docker-compose"}
}

// startDockerCluster builds the image (`compose build`), runs `compose up
// -d` and waits until every node is healthy and sees the three live.
func startDockerCluster(t *testing.T) *dockerCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("runs a cluster in Docker")
	}
	if out, err := exec.Command("docker", "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker Engine answers (docker info: %v): the compose tests need one\n%s", err, firstLines(string(out), 3))
	}
	// The compose tests run beside each other, after the package's
	// sequential tests: each has its own project, image tag and ports,
	// and most of their time is waiting (elections, leases, container
	// starts), so two at once take the package's wall time down by about
	// a third of their 340 s.
	t.Parallel()
	buildScratchContext(t)
	reapOnce.Do(func() { reapOrphanClusters(t) })
	id := make([]byte, 4)
	rand.Read(id)
	d := &dockerCluster{t: t, project: fmt.Sprintf("stratatest%dx%s", os.Getpid(), hex.EncodeToString(id))}
	d.env = append(os.Environ(), "STRATA_SCRATCH_IMAGE=strata-test:"+d.project)
	for i := range d.ports {
		d.ports[i] = testport.Free(t)
		d.env = append(d.env, fmt.Sprintf("STRATA_N%d_PORT=%d", i+1, d.ports[i]))
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := d.composeOut("logs", "--no-color", "--tail", "60")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := d.composeOut("down", "-v", "-t", "5", "--remove-orphans"); err != nil {
			t.Errorf("compose down -v: %v\n%s", err, out)
		}
		exec.Command("docker", "rmi", "-f", "strata-test:"+d.project).Run()
	})
	start := time.Now()
	d.compose("build")
	t.Logf("compose build: %s", time.Since(start).Round(100*time.Millisecond))
	t.Logf("compose up -d to three nodes healthy: %s", d.up().Round(100*time.Millisecond))
	return d
}

// reapOnce: a test process reaps the orphans of earlier ones once.
var reapOnce sync.Once

// reapOrphanClusters removes the compose projects of test processes that
// are gone: a test killed by go test's -timeout runs no Cleanup, and its
// three nodes would go on running (and loading the machine) for good. A
// project is named after its process (stratatest<pid>x<random>); one whose
// process still runs, here or in another session, is left alone, and so
// are names without a pid (older runs'), which cannot be told apart.
func reapOrphanClusters(t *testing.T) {
	out, err := exec.Command("docker", "ps", "-a", "--filter", "label=com.docker.compose.project",
		"--format", `{{.Label "com.docker.compose.project"}}`).Output()
	if err != nil {
		t.Logf("orphan clusters not reaped: docker ps: %v", err)
		return
	}
	seen := map[string]bool{}
	for _, project := range strings.Fields(string(out)) {
		pid, ok := projectPID(project)
		if !ok || seen[project] || processAlive(pid) {
			continue
		}
		seen[project] = true
		d := &dockerCluster{t: t, project: project, env: os.Environ()}
		if out, err := d.composeOut("down", "-v", "-t", "1", "--remove-orphans"); err != nil {
			t.Logf("orphan cluster %s not removed: %v\n%s", project, err, out)
			continue
		}
		exec.Command("docker", "rmi", "-f", "strata-test:"+project).Run()
		t.Logf("removed the cluster %s of test process %d, which is gone", project, pid)
	}
}

// projectPID is the test process of a project named stratatest<pid>x….
func projectPID(project string) (int, bool) {
	rest, ok := strings.CutPrefix(project, "stratatest")
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "x")
	pid, err := strconv.Atoi(digits)
	return pid, ok && err == nil && pid > 0
}

// processAlive: a process with this pid exists (it may have been reused,
// in which case the project is kept: the safe mistake).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// compose runs a compose subcommand of the project and fails the test if
// it fails.
func (d *dockerCluster) compose(args ...string) string {
	d.t.Helper()
	out, err := d.composeOut(args...)
	if err != nil {
		d.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (d *dockerCluster) composeOut(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := composeCommand()
	c = append(c, "-p", d.project, "-f", "../docker-compose.yml", "-f", "../docker-compose.scratch.yml")
	cmd := exec.CommandContext(ctx, c[0], append(c[1:], args...)...)
	cmd.Env = d.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// up runs `compose up -d`, waits until the nodes are healthy and
// see each other, reads the admin token, and returns how long that took.
func (d *dockerCluster) up() time.Duration {
	d.t.Helper()
	start := time.Now()
	d.compose("up", "-d")
	for i := range d.ports {
		d.waitHealthy(i)
	}
	took := time.Since(start)
	d.readToken()
	for i := range d.ports {
		d.waitLive(i)
	}
	return took
}

// container is node i's container id.
func (d *dockerCluster) container(i int) string {
	d.t.Helper()
	id := strings.TrimSpace(d.compose("ps", "-q", fmt.Sprintf("n%d", i+1)))
	if id == "" {
		d.t.Fatalf("n%d has no container", i+1)
	}
	return id
}

// waitHealthy waits until Docker's healthcheck (strata health) passes on
// node i.
func (d *dockerCluster) waitHealthy(i int) {
	d.t.Helper()
	id := d.container(i)
	var last string
	if !waitFor(clusterUpTimeout, func() bool {
		out, _ := exec.Command("docker", "inspect", "-f", "{{.State.Status}} {{.State.Health.Status}}", id).CombinedOutput()
		last = strings.TrimSpace(string(out))
		return last == "running healthy"
	}) {
		d.t.Fatalf("n%d not healthy after %s: %s", i+1, clusterUpTimeout, last)
	}
}

// readToken copies the first admin token out of whichever node's volume
// has it, and sends it with every request of the package's client.
func (d *dockerCluster) readToken() {
	d.t.Helper()
	dir := d.t.TempDir()
	for i := range d.ports {
		dst := filepath.Join(dir, fmt.Sprintf("n%d.token", i+1))
		if exec.Command("docker", "cp", d.container(i)+":/data/admin.token", dst).Run() != nil {
			continue
		}
		b, err := os.ReadFile(dst)
		if err != nil {
			d.t.Fatal(err)
		}
		d.token = strings.TrimSpace(string(b))
	}
	if d.token == "" {
		d.t.Fatal("no node's volume holds /data/admin.token")
	}
	for i := range d.ports {
		host := fmt.Sprintf("127.0.0.1:%d", d.ports[i])
		clusterTokens.Store(host, d.token)
		d.t.Cleanup(func() { clusterTokens.Delete(host) })
	}
}

// clusterTokens maps a compose cluster's published address (127.0.0.1:port)
// to its admin token. The compose tests run side by side through the
// package's one client, each cluster with a token of its own.
var clusterTokens sync.Map

func init() { client.Transport = bearerByHost{client.Transport} }

// bearerByHost adds the bearer token clusterTokens holds for a request's
// host, if it holds one.
type bearerByHost struct{ next http.RoundTripper }

func (b bearerByHost) RoundTrip(r *http.Request) (*http.Response, error) {
	if token, ok := clusterTokens.Load(r.URL.Host); ok {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+token.(string))
	}
	return b.next.RoundTrip(r)
}

// URL is node i's published gateway, "" while the test has it down.
func (d *dockerCluster) URL(i int) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.down[i] {
		return ""
	}
	return fmt.Sprintf("http://127.0.0.1:%d", d.ports[i])
}

// waitLive waits until node i's GET /v1/cluster lists the three nodes.
func (d *dockerCluster) waitLive(i int) {
	d.t.Helper()
	var last string
	if !waitFor(clusterUpTimeout, func() bool {
		var v clusterView
		code, err := getJSON(d.URL(i)+"/v1/cluster", &v)
		last = fmt.Sprintf("%d %v %+v", code, err, v.Nodes)
		return err == nil && code == http.StatusOK && len(v.Nodes) == 3
	}) {
		d.t.Fatalf("n%d does not list 3 live nodes after %s: %s", i+1, clusterUpTimeout, last)
	}
}

// kill is `docker kill` of node i (SIGKILL; Docker does not restart a
// killed container by itself).
func (d *dockerCluster) kill(i int) {
	d.t.Helper()
	d.mu.Lock()
	d.down[i] = true
	d.mu.Unlock()
	if out, err := exec.Command("docker", "kill", d.container(i)).CombinedOutput(); err != nil {
		d.t.Fatalf("docker kill n%d: %v\n%s", i+1, err, out)
	}
}

// start is `docker start` of node i after kill; it waits until the node
// is healthy and the others list it again.
func (d *dockerCluster) start(i int) {
	d.t.Helper()
	if out, err := exec.Command("docker", "start", d.container(i)).CombinedOutput(); err != nil {
		d.t.Fatalf("docker start n%d: %v\n%s", i+1, err, out)
	}
	d.waitHealthy(i)
	d.mu.Lock()
	d.down[i] = false
	d.mu.Unlock()
	for j := range d.ports {
		d.waitLive(j)
	}
}

// restart is `compose restart` of node i (SIGTERM: it drains and
// leaves, then starts again); clients leave it alone from just before the
// stop until it is healthy and listed by all three again.
func (d *dockerCluster) restart(i int) {
	d.t.Helper()
	d.mu.Lock()
	d.down[i] = true
	d.mu.Unlock()
	d.compose("restart", fmt.Sprintf("n%d", i+1))
	d.waitHealthy(i)
	d.mu.Lock()
	d.down[i] = false
	d.mu.Unlock()
	for j := range d.ports {
		d.waitLive(j)
	}
}

// getJSON GETs url with the package's client and decodes a 200.
func getJSON(url string, out any) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}

// dockerLoad is workers incrementing counters round-robin through the
// nodes the test has not killed, until stop.
type dockerLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	recorder[result]
}

func (d *dockerCluster) startLoad(names []string, workers int) *dockerLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &dockerLoad{cancel: cancel}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				name := names[(w*7+i)%len(names)]
				node := (w + i + i/len(names)) % len(d.ports)
				base := d.URL(node)
				if base == "" {
					node = (node + 1) % len(d.ports)
					if base = d.URL(node); base == "" {
						continue
					}
				}
				l.add(increment(base, node, name, fmt.Sprintf("w%d-%d", w, i)))
			}
		}()
	}
	return l
}

func (l *dockerLoad) stop() []result {
	l.cancel()
	l.wg.Wait()
	return l.snapshot()
}

// acked counts the acknowledged results ending after t.
func ackedAfter(results []result, t time.Time) map[string]int {
	n := map[string]int{}
	for _, r := range results {
		if r.status == http.StatusOK && r.end.After(t) {
			n[r.obj]++
		}
	}
	return n
}

// TestDockerComposeUpServes: `compose up` from nothing (the secrets
// service makes the NATS password), three nodes healthy; a write through
// each node is read through the other two.
func TestDockerComposeUpServes(t *testing.T) {
	d := startDockerCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range d.ports {
		name := fmt.Sprint("up-", i)
		for k := range 3 {
			var out struct{ Value int }
			if _, err := call(ctx, d.URL(i), "counter", name, "increment", nil, &out); err != nil || out.Value != k+1 {
				t.Fatalf("increment %s through n%d: %d, %v", name, i+1, out.Value, err)
			}
		}
		for j := range d.ports {
			var out struct{ Value int }
			if _, err := call(ctx, d.URL(j), "counter", name, "get", nil, &out); err != nil || out.Value != 3 {
				t.Errorf("get %s through n%d: %d, %v; want 3", name, j+1, out.Value, err)
			}
		}
	}
	if out := d.compose("logs", "--no-color", "secrets"); !strings.Contains(out, "NATS password written") {
		t.Errorf("the secrets service did not write the password:\n%s", out)
	}
	// Without a token, nothing but /healthz.
	resp, err := http.Post(d.URL(0)+"/v1/objects/counter/up-0/rpc/increment", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("increment without a token: %s, want 401", resp.Status)
	}
}

// TestDockerComposeNodeKill: `docker kill` one node while clients write
// through all three. Every counter is written again through the other two
// (the longest wait is logged), the node restarted rejoins and runs turns
// again, and no acknowledged write is lost: every history is gapless and
// holds each acknowledged increment once, with the value it answered.
func TestDockerComposeNodeKill(t *testing.T) {
	d := startDockerCluster(t)
	names := counterNames(12)
	const victim = 2
	l := d.startLoad(names, 6)
	if !waitFor(time.Minute, func() bool { return len(ackedAfter(l.snapshot(), time.Time{})) == len(names) }) {
		t.Fatalf("the load wrote not every counter within a minute: %v", ackedAfter(l.stop(), time.Time{}))
	}
	// The counters the victim runs, just before the kill.
	var victims []string
	for _, r := range l.snapshot() {
		if r.status == http.StatusOK && r.ranOn == "n3" && !slices.Contains(victims, r.obj) {
			victims = append(victims, r.obj)
		}
	}
	if len(victims) == 0 {
		t.Fatalf("n3 ran no counter of %d", len(names))
	}
	// Which Raft groups n3 led, as its log says (nats-server logs "new
	// stream leader" and "metadata leader" on the node elected): appends to
	// a shard whose leader dies wait for an election.
	logs, _ := exec.Command("docker", "logs", d.container(victim)).CombinedOutput()
	var led []string
	for _, line := range strings.Split(string(logs), "\n") {
		if _, s, ok := strings.Cut(line, "new stream leader for '$G > "); ok {
			led = append(led, strings.Trim(strings.Fields(s)[0], `'"`))
		} else if strings.Contains(line, "Self is new JetStream cluster metadata leader") {
			led = append(led, "meta")
		}
	}
	t.Logf("n3 was elected leader of %v", led)
	d.kill(victim)
	killAt := time.Now() // docker kill has returned: n3 is dead
	if !waitFor(time.Minute, func() bool { return len(ackedAfter(l.snapshot(), killAt)) == len(names) }) {
		t.Fatalf("writes did not resume on every counter within a minute of the kill: %v", ackedAfter(l.stop(), killAt))
	}
	restartAt := time.Now()
	d.start(victim)
	backAt := time.Now()
	if !waitFor(time.Minute, func() bool {
		for _, r := range l.snapshot() {
			if r.status == http.StatusOK && r.start.After(backAt) && r.ranOn == "n3" {
				return true
			}
		}
		return false
	}) {
		t.Errorf("no turn ran on n3 within a minute of its restart")
	}
	results := l.stop()
	acked := checkCounters(t, d.URL(0), names, results)
	perObj, obj, overall := longestGaps(results, killAt, restartAt)
	for _, r := range results {
		if r.status == http.StatusOK && r.ranOn == "n3" && r.start.After(killAt) && r.end.Before(restartAt) {
			t.Errorf("%s (%s) ran on n3 while it was dead", r.obj, r.token)
		}
	}
	t.Logf("%d of %d increments acknowledged; n3 ran %v before the kill", acked, len(results), victims)
	t.Logf("docker kill n3: longest wait for a counter's next acknowledged write %s (%s), for any write %s; docker start to n3 healthy and listed by all %s",
		perObj.Round(time.Millisecond), obj, overall.Round(time.Millisecond), backAt.Sub(restartAt).Round(100*time.Millisecond))
}

// TestDockerComposeRollingRestart: `compose restart` of each node in
// turn while clients write through the others: no non-retryable error, no
// acknowledged write lost (every history gapless, each acknowledged
// increment once with the value it answered), and every node runs turns
// again at the end.
func TestDockerComposeRollingRestart(t *testing.T) {
	d := startDockerCluster(t)
	names := counterNames(12)
	l := d.startLoad(names, 6)
	if !waitFor(time.Minute, func() bool { return len(ackedAfter(l.snapshot(), time.Time{})) == len(names) }) {
		t.Fatalf("the load wrote not every counter within a minute: %v", ackedAfter(l.stop(), time.Time{}))
	}
	start := time.Now()
	for i := range d.ports {
		at := time.Now()
		d.restart(i)
		t.Logf("n%d restarted, healthy and listed by all in %s", i+1, time.Since(at).Round(100*time.Millisecond))
	}
	end := time.Now()
	if !waitFor(time.Minute, func() bool {
		ran := map[string]bool{}
		for _, r := range l.snapshot() {
			if r.status == http.StatusOK && r.start.After(end) {
				ran[r.ranOn] = true
			}
		}
		return len(ran) == len(d.ports)
	}) {
		t.Errorf("not every node ran turns within a minute of the rolling restart")
	}
	results := l.stop()
	acked := checkCounters(t, d.URL(0), names, results)
	retried := 0
	for _, r := range results {
		if r.status != http.StatusOK {
			retried++
		}
	}
	perObj, obj, overall := longestGaps(results, start, end)
	t.Logf("rolling restart: %d of %d increments acknowledged, %d retryable failures; longest wait for a counter's next acknowledged write %s (%s), for any write %s",
		acked, len(results), retried, perObj.Round(time.Millisecond), obj, overall.Round(time.Millisecond))
}

// TestDockerComposeDownUp: `compose down` then `up` keeps every object
// and alarm (the volumes, the password included): counters keep their
// values, a session's far alarm is still set, and a session whose alarm
// fell due while the cluster was down expires after the up.
func TestDockerComposeDownUp(t *testing.T) {
	d := startDockerCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	names := counterNames(6)
	for i, name := range names {
		for range i + 1 {
			if _, err := call(ctx, d.URL(i%3), "counter", name, "increment", nil, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	var far struct {
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if _, err := call(ctx, d.URL(1), "session", "far", "touch", map[string]string{"ttl": "1h"}, &far); err != nil || far.ExpiresAt == nil {
		t.Fatalf("touch far: %+v %v", far, err)
	}
	// An alarm must fall due while every node is down. compose down takes
	// longer on a loaded machine than the lead: then the cluster comes up
	// again and the next try gives twice the time down took, and more.
	ttl := 15 * time.Second
	var due, downAt time.Time
	var dueName string
	for try := 1; ; try++ {
		dueName = fmt.Sprintf("due-%d", try)
		if _, err := call(ctx, d.URL(2), "session", dueName, "touch", map[string]string{"ttl": ttl.String()}, nil); err != nil {
			t.Fatal(err)
		}
		due = time.Now().Add(ttl)
		began := time.Now()
		d.compose("down")
		downAt = time.Now()
		if downAt.Before(due) {
			break
		}
		if try == 3 {
			t.Fatalf("compose down took until %s after the alarm was due, three times: no alarm fell due while down", downAt.Sub(due))
		}
		t.Logf("compose down took %s, past the alarm's lead of %s: up, and again with a longer lead", downAt.Sub(began).Round(100*time.Millisecond), ttl)
		ttl = 2*downAt.Sub(began) + 5*time.Second
		d.up()
	}
	time.Sleep(time.Until(due.Add(time.Second))) // the alarm falls due while every node is down
	took := d.up()
	t.Logf("compose up after down to three nodes healthy: %s", took.Round(100*time.Millisecond))

	if out := d.compose("logs", "--no-color", "secrets"); !strings.Contains(out, "NATS password kept") {
		t.Errorf("the secrets service did not keep the password across down and up:\n%s", out)
	}
	for i, name := range names {
		var out struct{ Value int }
		if _, err := call(ctx, d.URL((i+1)%3), "counter", name, "get", nil, &out); err != nil || out.Value != i+1 {
			t.Errorf("%s after down and up: %d, %v; want %d", name, out.Value, err, i+1)
		}
	}
	var st struct {
		Active    bool
		ExpiresAt *time.Time `json:"expires_at"`
	}
	if _, err := call(ctx, d.URL(0), "session", "far", "get", nil, &st); err != nil || !st.Active || st.ExpiresAt == nil || !st.ExpiresAt.Equal(*far.ExpiresAt) {
		t.Errorf("session far after down and up: %+v %v; want active, expiring at %s", st, err, far.ExpiresAt)
	}
	if !waitFor(time.Minute, func() bool {
		h, err := history(d.URL(0), "session", dueName)
		if err != nil {
			return false
		}
		for _, e := range h {
			for _, turn := range e.Turns {
				if turn.Via == "alarm" {
					if e.Time.Before(downAt) {
						t.Errorf("the alarm of session %s fired at %s, before the cluster was down", dueName, e.Time)
					}
					return true
				}
			}
		}
		return false
	}) {
		t.Fatalf("the alarm of session %s, due while the cluster was down, did not fire within a minute of the up", dueName)
	}
	if _, err := call(ctx, d.URL(1), "session", dueName, "get", nil, &st); err != nil || st.Active {
		t.Errorf("session due after its alarm: %+v %v; want expired", st, err)
	}
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
