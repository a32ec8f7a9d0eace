package log

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/strata-objects/strata/internal/testport"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

var testAuth = Auth{User: "strata", Password: "correct-horse-battery"}

// logRecorder is a slog handler that keeps lines, so a test can wait for
// what a server reported.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	r.lines = append(r.lines, rec.Message)
	r.mu.Unlock()
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }
func (r *logRecorder) has(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		if strings.Contains(strings.ToLower(l), s) {
			return true
		}
	}
	return false
}

// startCluster runs n embedded servers joined by routes, all with auth.
// A route port that another process took between testport.Free and the
// bind (parallel test packages do) starts the cluster again on fresh
// ports.
func startCluster(t testing.TB, n int) []*Server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		srvs, err := tryStartCluster(t, n)
		if err == nil {
			awaitRoutes(t, srvs)
			return srvs
		}
		if !testport.InUse(err) || attempt == 5 {
			t.Fatal(err)
		}
		t.Logf("attempt %d: %v: again on fresh ports", attempt, err)
	}
}

// tryStartCluster starts n servers on fresh route ports, or none: on an
// error it shuts down the ones it started.
func tryStartCluster(t testing.TB, n int) ([]*Server, error) {
	var routes []string
	ports := make([]int, n)
	for i := range n {
		ports[i] = testport.Free(t)
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", ports[i]))
	}
	var srvs []*Server
	for i := range n {
		srv, err := RunEmbedded(clusterServerConfig(t.TempDir(), i, ports[i], routes))
		if err != nil {
			for _, s := range srvs {
				shutdownServer(s)
			}
			return nil, err
		}
		srvs = append(srvs, srv)
	}
	for _, s := range srvs {
		t.Cleanup(func() { shutdownServer(s) })
	}
	return srvs, nil
}

// runClusterServer runs server n<i+1> of a cluster on dir and its route
// port, shut down when the test ends.
func runClusterServer(t testing.TB, dir string, i, port int, routes []string) *Server {
	t.Helper()
	return runServer(t, clusterServerConfig(dir, i, port, routes))
}

func clusterServerConfig(dir string, i, port int, routes []string) EmbeddedConfig {
	return EmbeddedConfig{
		Dir: dir, Logger: quiet, ServerName: fmt.Sprintf("n%d", i+1), Auth: testAuth, Listen: true,
		Cluster: &ClusterConfig{Port: port, Routes: routes},
	}
}

// runServer runs an embedded server, shut down when the test ends.
func runServer(t testing.TB, cfg EmbeddedConfig) *Server {
	t.Helper()
	srv, err := RunEmbedded(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdownServer(srv) })
	return srv
}

func shutdownServer(srv *Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// awaitRoutes waits until every server has routes to all the others.
func awaitRoutes(t testing.TB, srvs []*Server) {
	t.Helper()
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		for i, s := range srvs {
			if s.Routes() < len(srvs)-1 {
				return fmt.Errorf("server %d has %d routes", i+1, s.Routes())
			}
		}
		return nil
	})
}

// startClusterLogs runs n servers as startCluster does and opens an R3
// log on each.
func startClusterLogs(t testing.TB, n int) ([]*Server, []*Log) {
	t.Helper()
	srvs := startCluster(t, n)
	logs := make([]*Log, n)
	for i, s := range srvs {
		logs[i] = openClusterLog(t, s, fmt.Sprintf("n%d", i+1))
	}
	return srvs, logs
}

func openClusterLog(t testing.TB, srv *Server, name string) *Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := Open(ctx, Config{Server: srv, Replicas: 3, Shards: 2, Logger: quiet, ConnName: name, Auth: testAuth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		l.Close(ctx)
	})
	return l
}

// TestClusterR3 forms a three-server cluster with auth, appends on R3
// through every server, watches membership and forwards requests: the
// pieces scale-out is built from, on real servers.
func TestClusterR3(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a three-server JetStream cluster")
	}
	_, logs := startClusterLogs(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	t.Run("append fenced across nodes", func(t *testing.T) {
		id := objID(1)
		r1, err := logs[0].Append(ctx, testEvent(id, 1, "a"), 0)
		if err != nil {
			t.Fatal(err)
		}
		// Node 2 writes version 2 on top; node 3, still expecting the
		// first version's predecessor, is refused (10164 on R3).
		if _, err := logs[1].Append(ctx, testEvent(id, 2, "b"), r1.Seq); err != nil {
			t.Fatal(err)
		}
		if _, err := logs[2].Append(ctx, testEvent(id, 2, "c"), r1.Seq); !errors.Is(err, ErrConflict) {
			t.Fatalf("stale append on R3: %v, want ErrConflict", err)
		}
		last, err := logs[2].Last(ctx, "test", id)
		if err != nil || last.Event.Version != 2 || value(last) != "b" {
			t.Fatalf("last: %+v %v", last.Event, err)
		}
	})

	t.Run("retry of a landed append under another's", func(t *testing.T) {
		id := objID(2)
		ours := testEvent(id, 1, "ours")
		r1, err := logs[0].Append(ctx, ours, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := logs[1].Append(ctx, testEvent(id, 2, "theirs"), r1.Seq); err != nil {
			t.Fatal(err)
		}
		// The leader's answer: node 3's replica may lag.
		if again, err := logs[2].Append(ctx, ours, 0); err != nil || again.Seq != r1.Seq {
			t.Fatalf("retry on another node: seq %d, %v; want %d", again.Seq, err, r1.Seq)
		}
		if _, err := logs[2].Append(ctx, testEvent(id, 1, "other"), 0); !errors.Is(err, ErrConflict) {
			t.Fatalf("another version 1: %v, want ErrConflict", err)
		}
	})

	t.Run("checkpoint read on another node", func(t *testing.T) {
		id := objID(7)
		r, err := logs[0].Append(ctx, testEvent(id, 1, "a"), 0)
		if err != nil {
			t.Fatal(err)
		}
		ck := &Checkpoint{Class: "test", ID: id, Version: 1, Seq: r.Seq, Hash: r.Hash(), Keys: map[string][]byte{"k": []byte("v")}, Alarms: map[string]int64{}}
		if err := logs[0].WriteCheckpoint(ctx, ck); err != nil {
			t.Fatal(err)
		}
		// The other nodes ask the checkpoint stream's leader for the
		// newest manifest, and its leader for a chunk a replica lacks.
		for _, l := range logs[1:] {
			info, err := l.LastCheckpoint(ctx, "test", id)
			if err != nil || info.Version != 1 {
				t.Fatalf("last checkpoint: %+v %v", info, err)
			}
			got, err := l.LoadCheckpoint(ctx, info)
			if err != nil || string(got.Keys["k"]) != "v" {
				t.Fatalf("load checkpoint: %+v %v", got, err)
			}
		}
		if _, err := logs[1].msgAt(ctx, CkptStream(logs[1].ShardOf(id)), 1<<40); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a sequence no replica has: %v, want ErrNotFound (from the leader)", err)
		}
	})

	t.Run("membership", func(t *testing.T) {
		var views [3]*Members
		for i := range 3 {
			m, err := logs[i].JoinMembers(ctx, MembersConfig{Node: fmt.Sprintf("n%d", i+1), Info: []byte{byte(i)}, Heartbeat: 100 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			views[i] = m
		}
		names := func(m *Members) string {
			var s []string
			for _, x := range m.Live() {
				s = append(s, x.Node)
			}
			return strings.Join(s, ",")
		}
		for i, m := range views {
			checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if got := names(m); got != "n1,n2,n3" {
					return fmt.Errorf("n%d sees %s", i+1, got)
				}
				return nil
			})
		}
		// A graceful leave is seen by the others.
		if err := views[2].Leave(ctx); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if got := names(views[0]); got != "n1,n2" {
				return fmt.Errorf("n1 sees %s after n3 left", got)
			}
			return nil
		})
		// A silent node (heartbeats stop, no delete) expires after the TTL.
		views[1].silence()
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if got := names(views[0]); got != "n1" {
				return fmt.Errorf("n1 sees %s after n2 went silent", got)
			}
			return nil
		})
		views[0].Leave(ctx)
	})

	t.Run("request reply", func(t *testing.T) {
		r, err := logs[1].Serve(NodeSubject("n2"), func(ctx context.Context, req []byte) []byte {
			d, ok := ctx.Deadline()
			if !ok || time.Until(d) > 5*time.Second {
				return []byte("no deadline")
			}
			return append([]byte("echo:"), req...)
		})
		if err != nil {
			t.Fatal(err)
		}
		// The subscription's interest reaches the other servers shortly
		// after Serve returns.
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			defer rcancel()
			out, err := logs[0].Request(rctx, NodeSubject("n2"), []byte("hi"))
			if err != nil || !bytes.Equal(out, []byte("echo:hi")) {
				return fmt.Errorf("request: %q %v", out, err)
			}
			return nil
		})
		if _, err := logs[0].Request(ctx, NodeSubject("nobody"), nil); !errors.Is(err, ErrNoResponder) {
			t.Fatalf("request to nobody: %v, want ErrNoResponder", err)
		}
		got, err := logs[2].Gather(ctx, NodeSubject("n2"), []byte("x"), 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("gather: %q %v", got, err)
		}
		if err := r.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestClusterAuth: a server with the wrong credentials cannot join the
// routes, and a client with the wrong credentials cannot connect, so
// neither can publish into the streams.
func TestClusterAuth(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a JetStream cluster")
	}
	srvs := startCluster(t, 2)
	rec := &logRecorder{}
	bad, err := RunEmbedded(EmbeddedConfig{
		Dir: t.TempDir(), Logger: slog.New(rec), ServerName: "intruder",
		Auth:    Auth{User: "strata", Password: "wrong-password-here"},
		Cluster: &ClusterConfig{Routes: []string{srvs[0].ClusterAddr(), srvs[1].ClusterAddr()}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Shutdown(context.Background())
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if !rec.has("authorization") {
			return errors.New("the intruder's route has not been refused yet")
		}
		return nil
	})
	// The intruder counts a route for the moment between its handshake
	// and the peer's refusal: it must settle at none.
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n := bad.Routes(); n != 0 {
			return fmt.Errorf("intruder has %d routes", n)
		}
		return nil
	})
	for i, s := range srvs {
		if n := s.Routes(); n != 1 {
			t.Fatalf("server %d has %d routes, want only its peer", i+1, n)
		}
	}
	// A client with the wrong password, or none, is refused.
	for _, opt := range []nats.Option{nats.UserInfo("strata", "wrong-password-here"), nats.Name("anonymous")} {
		nc, err := nats.Connect(srvs[0].ClientURL(), opt)
		if err == nil {
			nc.Close()
			t.Fatal("connected with wrong credentials")
		}
		if !strings.Contains(strings.ToLower(err.Error()), "authorization") {
			t.Fatalf("connect: %v, want an authorization violation", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Open(ctx, Config{URL: srvs[0].ClientURL(), Logger: quiet, Auth: Auth{User: "strata", Password: "wrong-password-here"}}); err == nil {
		t.Fatal("log opened with wrong credentials")
	}
	if err := (Auth{User: "strata", Password: "short"}).validate(); err == nil {
		t.Fatal("short password accepted")
	}
}
