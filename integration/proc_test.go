// Package integration runs the real strata binary as child processes and
// drives it over HTTP: crashes are real SIGKILLs, storage is real folders.
package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// TestMain removes strataBinary's build when the tests end, and lets the
// compose tests' build start early (startScratchEarly).
func TestMain(m *testing.M) {
	flag.Parse()
	stopScratch := startScratchEarly()
	code := m.Run()
	stopScratch()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// strataBinary builds cmd/strata once per test run.
func strataBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		// go test caches results by what the test itself reads; the build
		// below reads the sources in a child process. Reading them here
		// too makes a change to any of them rerun these tests.
		filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod" || d.Name() == "go.sum") {
				os.ReadFile(path)
			}
			return nil
		})
		dir, err := os.MkdirTemp("", "strata-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "strata")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/strata").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// proc is one running `strata serve`.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	nats string // the embedded NATS client URL, if any
	logs *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}

	addr     chan string // the gateway's address, once it listens
	startErr error
}

var (
	servingLine = regexp.MustCompile(`msg=serving http=(\S+)`)
	natsLine    = regexp.MustCompile(`msg="embedded NATS running" url=(\S+)`)
)

// serve starts strata serve on dataDir with random ports and waits until
// its gateway answers.
func serve(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	strataBinary(t)
	p := launch(t, nil, dataDir, extra...)
	if err := p.waitServing(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// launch starts strata serve on dataDir with random ports (extra flags
// override them) and env added to the test's environment, without waiting;
// strataBinary must have run. waitServing tells when it answers.
func launch(t *testing.T, env []string, dataDir string, extra ...string) *proc {
	return launchIn(t, env, "", dataDir, extra...)
}

// launchIn is launch inside the network namespace netns ("": the test's
// own), by `ip netns exec`, which execs the binary: the process is
// strata's, so signals reach it.
func launchIn(t *testing.T, env []string, netns, dataDir string, extra ...string) *proc {
	args := append([]string{"serve", "--data", dataDir, "--http", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(binPath, args...)
	if netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", netns, binPath}, args...)...)
	}
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	p := &proc{t: t, cmd: cmd, logs: &bytes.Buffer{}, mu: &sync.Mutex{}, done: make(chan struct{}), addr: make(chan string, 1)}
	stderr, err := cmd.StderrPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		p.startErr = err
		close(p.done)
		return p
	}
	// Wait closes the pipe once the process has exited, so it waits for
	// the reader: done then means the output is all in p.logs (a test that
	// read it right after an exit found the last lines missing).
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := natsLine.FindStringSubmatch(line); m != nil {
				p.mu.Lock()
				p.nats = m[1]
				p.mu.Unlock()
			}
			if m := servingLine.FindStringSubmatch(line); m != nil {
				select {
				case p.addr <- m[1]:
				default: // a second one: the reader must not stop reading
				}
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { <-read; cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

// waitServing waits until the gateway listens, and sets p.url.
func (p *proc) waitServing(timeout time.Duration) error {
	if p.startErr != nil {
		return fmt.Errorf("start strata serve: %w", p.startErr)
	}
	select {
	case a := <-p.addr:
		p.url = "http://" + a
		return nil
	case <-p.done:
		return fmt.Errorf("strata serve %v exited early:\n%s", p.cmd.Args[1:], p.output())
	case <-time.After(timeout):
		return fmt.Errorf("strata serve %v did not start within %s:\n%s", p.cmd.Args[1:], timeout, p.output())
	}
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.startErr != nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		return fmt.Errorf("no exit 60s after SIGTERM:\n%s", p.output())
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("exit code %d:\n%s", code, p.output())
	}
	return nil
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 30 * time.Second}

// rpc posts an RPC and returns the status, the node that ran it (the
// Strata-Node header, in a cluster) and the answer's body.
func rpc(ctx context.Context, base, class, name, method string, in any) (status int, node string, body []byte, err error) {
	b, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/v1/objects/%s/%s/rpc/%s", base, class, name, method), bytes.NewReader(b))
	if err != nil {
		return 0, "", nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Strata-Node"), body, err
}

// call posts an RPC and decodes the answer into out. A non-2xx status is
// an error carrying the status.
func call(ctx context.Context, base, class, name, method string, in, out any) (int, error) {
	status, _, b, err := rpc(ctx, base, class, name, method, in)
	switch {
	case err != nil:
		return status, err
	case status != http.StatusOK:
		return status, fmt.Errorf("%s %s/%s: %d %s", method, class, name, status, strings.TrimSpace(string(b)))
	case out != nil:
		return status, json.Unmarshal(b, out)
	}
	return status, nil
}
