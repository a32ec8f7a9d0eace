package log

import (
	"fmt"
	"github.com/strata-objects/strata/internal/testport"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// blackhole is a TCP proxy on loopback that can fall silent: once cut, it
// discards what either side sends, without closing anything, the way a
// link whose packets are dropped behaves to the ends of a connection
// (no FIN, no RST). New connections are closed at once while cut.
type blackhole struct {
	ln     net.Listener
	target string
	cut    atomic.Bool
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		conns []net.Conn
	}
}

func newBlackhole(t testing.TB, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, target: target}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(b.close)
	return b
}

func (b *blackhole) addr() string { return b.ln.Addr().String() }

func (b *blackhole) accept() {
	defer b.wg.Done()
	for {
		in, err := b.ln.Accept()
		if err != nil {
			return // closed
		}
		if b.cut.Load() {
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", b.target)
		if err != nil {
			in.Close()
			continue
		}
		b.mu.Lock()
		b.mu.conns = append(b.mu.conns, in, out)
		b.mu.Unlock()
		b.wg.Add(2)
		go b.pipe(in, out)
		go b.pipe(out, in)
	}
}

// pipe copies from src to dst until either closes, dropping the bytes
// while the proxy is cut.
func (b *blackhole) pipe(src, dst net.Conn) {
	defer b.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !b.cut.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (b *blackhole) close() {
	b.ln.Close()
	b.mu.Lock()
	for _, c := range b.mu.conns {
		c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}

// TestRouteToSilentPeerCloses cuts a route silently and checks that the
// server notices within seconds: with NATS's defaults for routes (a ping
// every 30 s, 2 out) the route stayed open about a minute and a half,
// swallowing every request sent toward the silent peer (issue 22).
func TestRouteToSilentPeerCloses(t *testing.T) {
	if testing.Short() {
		t.Skip("forms a two-server cluster and waits for a stale route")
	}
	port2 := testport.Free(t)
	addr2 := fmt.Sprintf("127.0.0.1:%d", port2)
	proxy := newBlackhole(t, addr2)
	start := func(name string, port int, routes []string) *Server {
		return runServer(t, EmbeddedConfig{
			Dir: t.TempDir(), Logger: quiet, ServerName: name, Auth: testAuth,
			Cluster: &ClusterConfig{Port: port, Routes: routes},
		})
	}
	// n2 lists only itself, so n1's routes, through the proxy, are the
	// only ones between the two.
	n2 := start("n2", port2, []string{addr2})
	n1 := start("n1", testport.Free(t), []string{proxy.addr()})
	checkFor(t, 20*time.Second, 20*time.Millisecond, func() error {
		if n1.Routes() < 1 || n2.Routes() < 1 {
			return fmt.Errorf("routes: n1 %d, n2 %d", n1.Routes(), n2.Routes())
		}
		return nil
	})

	proxy.cut.Store(true)
	cut := time.Now()
	// interval × (max pings out + 1) is 4 s by default; the bound leaves
	// room for a loaded machine and is far below NATS's own ~90 s.
	const bound = 15 * time.Second
	checkFor(t, bound, 10*time.Millisecond, func() error {
		if n := n1.Routes(); n != 0 {
			return fmt.Errorf("n1 still has %d route(s) to the silent n2", n)
		}
		return nil
	})
	t.Logf("route to the silent peer closed %s after the cut", time.Since(cut).Round(10*time.Millisecond))
}

func TestRoutePingConfig(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		max      int
		want     string
	}{
		{"interval too short", time.Millisecond, 0, "route ping interval"},
		{"interval too long", time.Minute, 0, "route ping interval"},
		{"negative pings out", 0, -1, "route max pings out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RunEmbedded(EmbeddedConfig{
				Dir: t.TempDir(), Logger: quiet, ServerName: "n1", Auth: testAuth,
				Cluster: &ClusterConfig{Routes: []string{"127.0.0.1:1"}, RoutePingInterval: tc.interval, RouteMaxPingsOut: tc.max},
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("RunEmbedded: %v, want an error about %s", err, tc.want)
			}
		})
	}
}
