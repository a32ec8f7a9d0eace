package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
)

// The client subcommands (call, history, state, restore, audit, ls, tail,
// alarms) talk to a node's gateway. These are their one way to do it.

// answerBytesMax bounds an answer a subcommand reads whole.
const answerBytesMax = 64 << 20

// gatewayFlags are the flags of a command that talks to a running node's
// gateway: --url, the credentials (clientAuth) and --timeout; the command
// adds its own to the embedded set.
type gatewayFlags struct {
	*flag.FlagSet
	base    *string
	ca      clientAuth
	timeout *time.Duration
}

// newGatewayFlags makes command name's flags; synopsis is its usage line,
// urlHelp what --url says.
func newGatewayFlags(env *Env, name, synopsis, urlHelp string) *gatewayFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, synopsis)
	g := &gatewayFlags{FlagSet: fs, base: fs.String("url", "http://127.0.0.1:8080", urlHelp), timeout: timeoutFlag(fs)}
	g.ca.register(fs)
	return g
}

// parse parses args and returns ctx carrying the credentials and the
// timeout of every request sent with it.
func (g *gatewayFlags) parse(ctx context.Context, args []string) (context.Context, error) {
	if err := parseFlags(g.FlagSet, args); err != nil {
		return nil, err
	}
	return withTimeout(g.ca.with(ctx), *g.timeout)
}

// timeoutFlag registers a client command's --timeout.
func timeoutFlag(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("timeout", 30*time.Second, "give up on a gateway that does not answer within this, per request (tail and --follow: until the stream starts)")
}

type timeoutKey struct{}

// withTimeout makes every request sent with ctx give up after d without
// an answer (0: never). A command sends several requests (audit --all,
// ls pages), so each has its own d rather than the command.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, error) {
	if d < 0 {
		return nil, &usageError{fmt.Sprintf("--timeout %s: want a positive duration, or 0 for none", d)}
	}
	return context.WithValue(ctx, timeoutKey{}, d), nil
}

// ErrNoAnswer is a request that got no answer within --timeout.
var ErrNoAnswer = errors.New("no answer from the gateway")

// open sends a request and returns the answer's body when the status is
// 2xx; otherwise the gateway's error, with its status. The request's
// timeout (withTimeout) runs until the answer's headers are in: the body
// may stream on (tail, history --follow).
func open(ctx context.Context, method, u string, body []byte) (io.ReadCloser, error) {
	rc, stop, err := send(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	stop()
	return rc, nil
}

// send is open, leaving the timeout running until the caller calls stop.
func send(ctx context.Context, method, u string, body []byte) (_ io.ReadCloser, stop func() bool, _ error) {
	ctx, cancel := context.WithCancel(ctx)
	var timedOut atomic.Bool
	d, _ := ctx.Value(timeoutKey{}).(time.Duration)
	stop = func() bool { return true }
	if d > 0 {
		t := time.AfterFunc(d, func() { timedOut.Store(true); cancel() })
		stop = t.Stop
	}
	rc, err := exchange(ctx, method, u, body)
	if err != nil {
		stop()
		cancel()
		if timedOut.Load() {
			return nil, nil, fmt.Errorf("%s %s: %w within %s (--timeout)", method, u, ErrNoAnswer, d)
		}
		return nil, nil, err
	}
	return &cancelOnClose{ReadCloser: rc, cancel: cancel, timedOut: &timedOut, d: d}, stop, nil
}

// cancelOnClose ends a request's context with its body, and says so when
// the body was cut by the timeout.
type cancelOnClose struct {
	io.ReadCloser
	cancel   context.CancelFunc
	timedOut *atomic.Bool
	d        time.Duration
}

func (c *cancelOnClose) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err != nil && err != io.EOF && c.timedOut.Load() {
		err = fmt.Errorf("%w within %s (--timeout): %w", ErrNoAnswer, c.d, err)
	}
	return n, err
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

func exchange(ctx context.Context, method, u string, body []byte) (io.ReadCloser, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, &usageError{err.Error()}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := bearerFrom(ctx); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return resp.Body, nil
}

// fetch is open, reading the whole answer within the timeout.
func fetch(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	rc, stop, err := send(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	defer stop()
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, answerBytesMax))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, u, err)
	}
	return b, nil
}

// objectURL is base/v1/objects/{class}/{name}/{rest}?q, each part escaped.
func objectURL(base, class, name, rest string, q url.Values) string {
	u := strings.TrimRight(base, "/") + "/v1/objects/" + url.PathEscape(class)
	if name != "" {
		u += "/" + url.PathEscape(name)
	}
	if rest != "" {
		u += "/" + rest
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}
