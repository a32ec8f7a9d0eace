package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// `strata bench ws`: memory per idle, hibernated WebSocket, measured as the
// resident memory of a server process of its own, and broadcast fan-out to
// one room.

type benchWSConfig struct {
	url        string
	pid        int
	conns      int
	roomSize   int
	sources    string
	fanClients int
	fanMsgs    int
	fanSenders int
	idle       time.Duration
	settle     time.Duration
	json       bool
}

func runBenchWS(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("bench ws", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "bench ws [flags]")
	var c benchWSConfig
	fs.StringVar(&c.url, "url", "", "gateway of a running server (default: start `serve` as a child process on a temporary folder)")
	fs.IntVar(&c.pid, "pid", 0, "with --url: the server's process id, to read its resident memory")
	fs.IntVar(&c.conns, "conns", 10000, "idle connections to hold (each needs a file descriptor in this process and in the server)")
	fs.IntVar(&c.roomSize, "room-size", 10, "idle connections per chat room")
	fs.StringVar(&c.sources, "sources", "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4", "local addresses to dial from, spread so that no one address runs out of ephemeral ports")
	fs.IntVar(&c.fanClients, "fanout-clients", 1000, "members of the fan-out room (0: skip)")
	fs.IntVar(&c.fanMsgs, "fanout-messages", 200, "messages broadcast to the fan-out room")
	fs.IntVar(&c.fanSenders, "fanout-senders", 8, "members sending the fan-out messages")
	fs.DurationVar(&c.idle, "idle-timeout", 2*time.Second, "the child server's --idle-timeout: rooms hibernate after it")
	fs.DurationVar(&c.settle, "settle", 130*time.Second, "how long the connections sit idle before the server's memory is read (past 2 minutes the Go runtime has collected the garbage of opening them)")
	fs.BoolVar(&c.json, "json", false, "print results as JSON lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if c.conns < 0 || c.roomSize <= 0 || c.fanClients < 0 || c.fanMsgs <= 0 || c.fanSenders <= 0 || (c.fanClients > 0 && c.fanSenders > c.fanClients) {
		return &usageError{"--conns, --room-size, --fanout-* must be positive, and senders at most clients"}
	}
	var sources []net.IP
	for _, s := range strings.Split(c.sources, ",") {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return &usageError{fmt.Sprintf("--sources: %q is not an IP address", s)}
		}
		sources = append(sources, ip)
	}
	base := strings.TrimRight(c.url, "/")
	pid := c.pid
	if base == "" {
		srv, err := startChildServer(ctx, env.Stderr, c.idle)
		if err != nil {
			return err
		}
		defer srv.stop()
		base, pid = srv.url, srv.cmd.Process.Pid
	}
	wsBase := "ws" + strings.TrimPrefix(base, "http")
	out := func(name, what string, value float64, unit string) {
		if c.json {
			json.NewEncoder(env.Stdout).Encode(map[string]any{"workload": name, "what": what, "value": value, "unit": unit})
			return
		}
		fmt.Fprintf(env.Stdout, "%-8s %-58s %14.1f %s\n", name, what, value, unit)
	}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)

	if c.conns > 0 {
		before, _ := rssBytes(pid)
		pool := newClientPool(sources)
		defer pool.closeAll()
		t0 := time.Now()
		err := pool.dialMany(ctx, c.conns, 64, func(i int) string {
			return fmt.Sprintf("%s/v1/objects/chat/idle-%s-%d/ws?name=u%d", wsBase, run, i/c.roomSize, i)
		}, env.Stderr)
		if err != nil {
			return fmt.Errorf("after %d connections: %w", pool.len(), err)
		}
		took := time.Since(t0)
		settle := max(c.settle, 3*c.idle)
		fmt.Fprintf(env.Stderr, "ws: %d connections open in %s; idle for %s (rooms hibernate after %s)\n", pool.len(), took.Round(time.Millisecond), settle, c.idle)
		select {
		case <-time.After(3 * c.idle):
		case <-ctx.Done():
			return ctx.Err()
		}
		if early, err := rssBytes(pid); err == nil && before > 0 {
			out("WS-idle", fmt.Sprintf("server memory per connection after %s idle", 3*c.idle), float64(early-before)/float64(pool.len())/1024, "KiB")
		}
		select {
		case <-time.After(settle - 3*c.idle):
		case <-ctx.Done():
			return ctx.Err()
		}
		out("WS-idle", "connections held open, rooms hibernated", float64(pool.len()), "conns")
		out("WS-idle", "connections opened per second", float64(pool.len())/took.Seconds(), "conns/s")
		if after, err := rssBytes(pid); err == nil && before > 0 {
			out("WS-idle", "server resident memory before", float64(before)/(1<<20), "MiB")
			out("WS-idle", "server resident memory with the connections", float64(after)/(1<<20), "MiB")
			out("WS-idle", fmt.Sprintf("server memory per connection after %s idle", settle), float64(after-before)/float64(pool.len())/1024, "KiB")
		} else {
			fmt.Fprintln(env.Stderr, "ws: server memory not measured (give --pid with --url)")
		}
		if lost := pool.dropped.Load(); lost > 0 {
			return fmt.Errorf("%d idle connections were dropped by the server", lost)
		}
		pool.closeAll()
	}
	if c.fanClients > 0 {
		r, err := fanOut(ctx, wsBase, "fanout-"+run, c.fanClients, c.fanSenders, c.fanMsgs, sources, env.Stderr)
		if err != nil {
			return err
		}
		out("WS-fan", fmt.Sprintf("%d messages to a room of %d, %d senders", c.fanMsgs, c.fanClients, c.fanSenders), r.perSec, "deliveries/s")
		out("WS-fan", "message latency p50 (send to last member)", r.p50ms, "ms")
		out("WS-fan", "message latency p99 (send to last member)", r.p99ms, "ms")
	}
	return nil
}

// childServer is `serve` run from this same binary on a temporary folder.
type childServer struct {
	cmd  *exec.Cmd
	name string
	url  string
	dir  string
	done chan struct{}
	addr chan string // the HTTP address, once it serves
}

var servingRE = regexp.MustCompile(`msg=serving http=(\S+)`)

func startChildServer(ctx context.Context, logTo io.Writer, idle time.Duration) (*childServer, error) {
	s, err := launchChildServer("ws", nil, "--idle-timeout", idle.String())
	if err != nil {
		return nil, err
	}
	if err := s.wait(ctx, logTo); err != nil {
		return nil, err
	}
	return s, nil
}

// launchChildServer starts `serve` from this same binary on a temporary
// folder with the extra flags and environment, without waiting for it:
// the nodes of a cluster start together (each waits for the others).
func launchChildServer(name string, env []string, flags ...string) (*childServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "strata-bench-"+name+"-")
	if err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--data", filepath.Join(dir, "data"), "--http", "127.0.0.1:0", "--log-level", "info"}, flags...)
	cmd := exec.Command(exe, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &childServer{cmd: cmd, name: name, dir: dir, done: make(chan struct{}), addr: make(chan string, 1)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case s.addr <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { cmd.Wait(); close(s.done) }()
	return s, nil
}

// wait waits until the server serves HTTP (it is stopped if it does not).
func (s *childServer) wait(ctx context.Context, logTo io.Writer) error {
	select {
	case a := <-s.addr:
		s.url = "http://" + a
		fmt.Fprintf(logTo, "%s: server pid %d at %s, data in %s\n", s.name, s.cmd.Process.Pid, s.url, s.dir)
		return nil
	case <-s.done:
		os.RemoveAll(s.dir)
		return fmt.Errorf("%s: the server exited before serving", s.name)
	case <-ctx.Done():
		s.stop()
		return ctx.Err()
	case <-time.After(60 * time.Second):
		s.stop()
		return fmt.Errorf("%s: the server did not start in 60s", s.name)
	}
}

func (s *childServer) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	os.RemoveAll(s.dir)
}

// rssBytes reads a process's resident set size from /proc (Linux).
func rssBytes(pid int) (int64, error) {
	if pid <= 0 {
		return 0, errors.New("no pid")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// clientPool holds many client sockets, each read by a goroutine that
// discards what it gets (and answers pings).
type clientPool struct {
	sources []net.IP
	next    atomic.Uint64
	mu      sync.Mutex
	conns   []*websocket.Conn
	wg      sync.WaitGroup
	closing atomic.Bool
	dropped atomic.Int64 // connections that ended before closeAll
}

func newClientPool(sources []net.IP) *clientPool { return &clientPool{sources: sources} }

func (p *clientPool) dialer() *websocket.Dialer {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if len(p.sources) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: p.sources[p.next.Add(1)%uint64(len(p.sources))]}
	}
	return &websocket.Dialer{NetDialContext: d.DialContext, ReadBufferSize: 1024, WriteBufferSize: 1024, HandshakeTimeout: 30 * time.Second}
}

func (p *clientPool) dial(ctx context.Context, url string, onMessage func([]byte)) (*websocket.Conn, error) {
	c, resp, err := p.dialer().DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("dial %s: %w (status %d)", url, err, resp.StatusCode)
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			_, b, err := c.ReadMessage()
			if err != nil {
				if !p.closing.Load() {
					p.dropped.Add(1)
				}
				return
			}
			if onMessage != nil {
				onMessage(b)
			}
		}
	}()
	return c, nil
}

func (p *clientPool) dialMany(ctx context.Context, n, workers int, url func(int) string, progressTo io.Writer) error {
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if _, err := p.dial(ctx, url(i), nil); err != nil {
					errOnce.Do(func() { firstErr = err })
					next.Store(int64(n))
					return
				}
				if i%1000 == 999 {
					fmt.Fprintf(progressTo, "\rws: %d connections   ", i+1)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Fprintf(progressTo, "\r%-40s\r", "")
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func (p *clientPool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

func (p *clientPool) closeAll() {
	p.closing.Store(true)
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
	p.wg.Wait()
}

type fanOutResult struct {
	perSec, p50ms, p99ms float64
}

// fanOut fills one chat room with clients, then has senders post msgs
// messages (at most window unanswered each) and measures deliveries per
// second until every member has every message.
func fanOut(ctx context.Context, wsBase, room string, clients, senders, msgs int, sources []net.IP, progressTo io.Writer) (fanOutResult, error) {
	const window = 4 // unanswered messages per sender
	pool := newClientPool(sources)
	defer pool.closeAll()
	var delivered atomic.Int64
	want := int64(clients) * int64(msgs)
	done := make(chan struct{})
	var doneOnce sync.Once
	counts := make([]atomic.Int32, msgs+1) // members that got message k
	sentAt := make([]atomic.Int64, msgs+1)
	gotAt := make([]atomic.Int64, msgs+1) // when the last member got it
	onMsg := func(b []byte) {
		var f struct {
			Type    string `json:"type"`
			Message *struct {
				Seq  int64  `json:"seq"`
				Text string `json:"text"`
			} `json:"message"`
		}
		if json.Unmarshal(b, &f) != nil || f.Type != "message" {
			return
		}
		var k int
		if _, err := fmt.Sscanf(f.Message.Text, "fan %d", &k); err != nil || k < 1 || k > msgs {
			return
		}
		if counts[k].Add(1) == int32(clients) {
			gotAt[k].Store(time.Now().UnixNano())
		}
		if delivered.Add(1) == want {
			doneOnce.Do(func() { close(done) })
		}
	}
	url := func(i int) string { return fmt.Sprintf("%s/v1/objects/chat/%s/ws?name=f%d", wsBase, room, i) }
	conns := make([]*websocket.Conn, 0, senders)
	for i := range clients {
		c, err := pool.dial(ctx, url(i), onMsg)
		if err != nil {
			return fanOutResult{}, err
		}
		if i < senders {
			conns = append(conns, c)
		}
	}
	fmt.Fprintf(progressTo, "ws: %d members in room %s; broadcasting %d messages\n", clients, room, msgs)
	var next atomic.Int64
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := int(next.Add(1))
				if k > msgs {
					return
				}
				// Keep at most window messages of the whole room unanswered.
				for k > window*senders && counts[k-window*senders].Load() < int32(clients) {
					select {
					case <-done:
						return
					case <-ctx.Done():
						return
					case <-time.After(200 * time.Microsecond):
					}
				}
				sentAt[k].Store(time.Now().UnixNano())
				if err := c.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, "fan %d", k)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fanOutResult{}, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return fanOutResult{}, ctx.Err()
	case <-time.After(120 * time.Second):
		return fanOutResult{}, fmt.Errorf("fan-out: %d of %d deliveries after 120s (%d members dropped)", delivered.Load(), want, pool.dropped.Load())
	}
	elapsed := time.Since(t0)
	lat := make([]time.Duration, 0, msgs)
	for k := 1; k <= msgs; k++ {
		lat = append(lat, time.Duration(gotAt[k].Load()-sentAt[k].Load()))
	}
	r := summarize("", "", lat, 0, elapsed)
	return fanOutResult{perSec: float64(want) / elapsed.Seconds(), p50ms: r.P50Millis, p99ms: r.P99Millis}, nil
}

// fanOut is workload W6: 100 messages broadcast to a chat room of 1,000
// members; the rate is deliveries (message × member) per second.
func (b *bencher) fanOut(ctx context.Context, run string) (benchResult, error) {
	const members, msgs, senders = 1000, 100, 8
	wsBase := "ws" + strings.TrimPrefix(b.base, "http")
	r, err := fanOut(ctx, wsBase, "w6-"+run, members, senders, msgs, nil, b.out)
	if err != nil {
		return benchResult{}, fmt.Errorf("W6: %w", err)
	}
	return benchResult{Workload: "W6", What: fmt.Sprintf("ws broadcast, room of %d, %d msgs", members, msgs), Requests: members * msgs, PerSecond: r.perSec, P50Millis: r.p50ms, P99Millis: r.p99ms}, nil
}
