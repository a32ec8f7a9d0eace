package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// TestNATSNotReachable: a node started without --nats-listen listens on
// its gateway's port and no other, so no NATS client can reach its log.
func TestNATSNotReachable(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	p := serve(t, t.TempDir())
	if !strings.Contains(p.output(), `listener="none (in process only)"`) {
		t.Fatalf("no in-process line in the log:\n%s", p.output())
	}
	_, httpPort, _ := strings.Cut(strings.TrimPrefix(p.url, "http://"), ":")
	ports := listeningPorts(t, p.cmd.Process.Pid)
	if len(ports) != 1 || strconv.Itoa(ports[0]) != httpPort {
		t.Fatalf("strata serve listens on %v, want only the gateway's %s", ports, httpPort)
	}
}

// TestForgedEvents: a node with --nats-listen wants credentials (a client
// without them cannot connect); an authenticated client that publishes
// garbage, an event with a wrong PrevHash and one with a wrong version
// onto three objects' subjects bricks nothing: those objects answer
// corrupt_log naming the message's sequence (not a retryable 503), audit
// reports each (ok false, broken_at), other objects keep working, the node
// restarts, and `strata rebuild` lists the three and rebuilds the rest.
func TestForgedEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	ctx := context.Background()
	dir := t.TempDir()
	p := serve(t, dir, "--nats-listen", "127.0.0.1:0", "--shards", "1")
	p.mu.Lock()
	natsURL := p.nats
	p.mu.Unlock()
	pwFile := filepath.Join(dir, "nats-client-password")
	st, err := os.Stat(pwFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("client password file: %v, mode %v; want 0600", err, st)
	}
	pw, err := os.ReadFile(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, opts := range [][]nats.Option{nil, {nats.UserInfo("strata", "not-the-password")}} {
		if nc, err := nats.Connect(natsURL, opts...); err == nil {
			nc.Close()
			t.Fatal("a NATS client without the password connected")
		}
	}
	nc, err := nats.Connect(natsURL, nats.UserInfo("strata", strings.TrimSpace(string(pw))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}

	names := []string{"garbage", "prevhash", "version", "bystander"}
	for _, name := range names {
		for i := range 2 {
			if _, err := call(ctx, p.url, "kv", name, "put", map[string]any{"key": fmt.Sprint("k", i), "value": i}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	subject := func(name string) string { return log.ObjectSubject(0, "kv", objects.IDFromName("kv", name)) }
	last := func(name string) (*log.Event, []byte) {
		m, err := js.GetLastMsg(log.LogStream(0), subject(name))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := log.Decode(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		return ev, m.Data
	}
	forged := func(ev *log.Event) []byte {
		ev.Turns = []log.Turn{{Cause: log.Cause{Via: log.ViaRPC, Method: "put"}, Writes: []log.Write{{Op: log.OpPut, Key: "k0", Value: []byte(`"forged"`)}}}}
		b, err := log.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	publish := func(name string, data []byte) uint64 {
		ack, err := js.Publish(subject(name), data)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	seqs := map[string]uint64{}
	seqs["garbage"] = publish("garbage", []byte("not an event at all"))
	ev, _ := last("prevhash")
	ev.Version++
	ev.PrevHash = log.Hash{0xba, 0xd}
	seqs["prevhash"] = publish("prevhash", forged(ev))
	ev, data := last("version")
	ev.PrevHash = log.ChainHash(ev.PrevHash, data)
	ev.Version += 2
	seqs["version"] = publish("version", forged(ev))

	// corrupt checks that name answers corrupt_log naming its sequence,
	// after at most one 409 (its live activation was fenced by the
	// forged message), and again on a second try.
	corrupt := func(base, name string) {
		t.Helper()
		for try, fenced := 0, 0; try < 2; {
			status, _, body, err := rpc(ctx, base, "kv", name, "put", map[string]any{"key": "k9", "value": 9})
			if err != nil {
				t.Fatal(err)
			}
			if status == http.StatusConflict && fenced == 0 {
				fenced++
				continue
			}
			var e struct {
				Error struct {
					Code, Message string
					Retryable     bool
				}
			}
			json.Unmarshal(body, &e)
			if status != http.StatusInternalServerError || e.Error.Code != "corrupt_log" || e.Error.Retryable ||
				!strings.Contains(e.Error.Message, fmt.Sprintf("sequence %d", seqs[name])) {
				t.Fatalf("%s: %d %s; want 500 corrupt_log naming sequence %d, not retryable", name, status, body, seqs[name])
			}
			try++
		}
	}
	audit := func(base, name string) {
		t.Helper()
		resp, err := client.Get(fmt.Sprintf("%s/v1/objects/kv/%s/audit", base, name))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep struct {
			OK       bool   `json:"ok"`
			BrokenAt uint64 `json:"broken_at"`
		}
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &rep); err != nil || resp.StatusCode != 200 || rep.OK || rep.BrokenAt != seqs[name] {
			t.Fatalf("audit %s: %d %s; want ok false, broken_at %d", name, resp.StatusCode, b, seqs[name])
		}
	}
	bystander := func(base string, want int) {
		t.Helper()
		var out struct{ Value int }
		if _, err := call(ctx, base, "kv", "bystander", "get", map[string]any{"key": "k1"}, &out); err != nil || out.Value != want {
			t.Fatalf("bystander: %v %v; want %d", out, err, want)
		}
	}
	for _, name := range names[:3] {
		corrupt(p.url, name)
		audit(p.url, name)
	}
	bystander(p.url, 1)
	if _, err := call(ctx, p.url, "kv", "bystander", "put", map[string]any{"key": "k1", "value": 7}, nil); err != nil {
		t.Fatal(err)
	}
	nc.Close()

	// A restart replays the log past the forged messages.
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	p = serve(t, dir)
	bystander(p.url, 7)
	corrupt(p.url, "prevhash")
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}

	// rebuild lists the three and rebuilds every other object.
	out, err := exec.Command(strataBinary(t), "rebuild", "--data", dir).CombinedOutput()
	if err == nil {
		t.Fatalf("rebuild of a log with forged messages exited 0:\n%s", out)
	}
	for _, name := range names[:3] {
		if !strings.Contains(string(out), fmt.Sprintf("broken: %s sequence %d on %s", log.LogStream(0), seqs[name], subject(name))) {
			t.Fatalf("rebuild does not report %s at %d:\n%s", name, seqs[name], out)
		}
	}
	if !strings.Contains(string(out), "rebuilt snapshot from") {
		t.Fatalf("rebuild did not rebuild:\n%s", out)
	}
	p = serve(t, dir)
	bystander(p.url, 7)
	for _, name := range names[:3] {
		corrupt(p.url, name)
	}
}

// listeningPorts is the TCP ports pid listens on (Linux: its socket
// inodes matched against /proc/net/tcp and tcp6).
func listeningPorts(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	var ports []int
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			_, portHex, _ := strings.Cut(fields[1], ":")
			port, err := strconv.ParseUint(portHex, 16, 16)
			if err == nil {
				ports = append(ports, int(port))
			}
		}
		f.Close()
	}
	return ports
}
