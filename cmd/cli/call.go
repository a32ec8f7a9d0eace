package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Retries of `strata call`: every call carries an Idempotency-Key (a new
// random one unless --idempotency-key names one), so running it again after
// a lost answer, a timeout or an owner's death is safe: the node answers a
// retry of a call that ran with the first answer and runs it only once.
// Without a key (--idempotency-key none) only refusals where nothing ran
// are retried.
const (
	callBackoffMin = 100 * time.Millisecond
	callBackoffMax = 2 * time.Second
	noKey          = "none"
)

func runCall(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "call [flags] <class> <name> <method> [json]")
	base := fs.String("url", "http://127.0.0.1:8080", "gateway URL")
	var ca clientAuth
	ca.register(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout, retries included")
	key := fs.String("idempotency-key", "", `Idempotency-Key to send (default: a random one per call; "none": send none)`)
	retries := fs.Int("retries", 5, "retries after a failure whose outcome is unknown or retryable (0: none)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx = ca.with(ctx)
	if fs.NArg() < 3 || fs.NArg() > 4 {
		fs.Usage()
		return &usageError{"call needs <class> <name> <method> [json]"}
	}
	if *retries < 0 {
		return &usageError{fmt.Sprintf("--retries %d is negative", *retries)}
	}
	class, name, method := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	body := "{}"
	if fs.NArg() == 4 {
		body = fs.Arg(3)
	}
	switch *key {
	case "":
		*key = newCallKey()
	case noKey:
		*key = ""
	}
	u := objectURL(*base, class, name, "rpc/"+url.PathEscape(method), nil)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	out, err := callWithRetries(ctx, u, []byte(body), *key, *retries)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%w within %s (--timeout): %w", ErrNoAnswer, *timeout, err)
		}
		return err
	}
	_, err = env.Stdout.Write(out)
	return err
}

func newCallKey() string {
	var b [16]byte
	rand.Read(b[:])
	return "strata-call-" + hex.EncodeToString(b[:])
}

// callWithRetries posts body to u, again after a retryable failure, with
// backoff, until it is answered, the failure is final, retries are spent
// or ctx ends.
func callWithRetries(ctx context.Context, u string, body []byte, key string, retries int) ([]byte, error) {
	backoff := callBackoffMin
	for attempt := 0; ; attempt++ {
		out, wait, err := callOnce(ctx, u, body, key)
		if err == nil {
			return out, nil
		}
		var final *finalError
		if errors.As(err, &final) || attempt >= retries || ctx.Err() != nil {
			return nil, err
		}
		wait = max(wait, backoff)
		backoff = min(2*backoff, callBackoffMax)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("%w (gave up retrying: %v)", err, ctx.Err())
		}
	}
}

// finalError is an answer that a retry would not change.
type finalError struct{ err error }

func (e *finalError) Error() string { return e.err.Error() }
func (e *finalError) Unwrap() error { return e.err }

// callOnce makes one attempt. A failure is retryable when nothing ran
// (the gateway said so), or when the outcome is unknown and the call is
// keyed; wait is the server's Retry-After.
func callOnce(ctx context.Context, u string, body []byte, key string) (out []byte, wait time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, 0, &finalError{&usageError{err.Error()}}
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if tok := bearerFrom(ctx); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		err = fmt.Errorf("POST %s: %w", u, err)
		if key == "" {
			return nil, 0, &finalError{fmt.Errorf("%w (not retried: without an idempotency key the call may have run)", err)}
		}
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, rerr := io.ReadAll(io.LimitReader(resp.Body, answerBytesMax))
	if resp.StatusCode/100 == 2 {
		if rerr != nil {
			err = fmt.Errorf("POST %s: read answer: %w", u, rerr)
			if key == "" {
				return nil, 0, &finalError{err}
			}
			return nil, 0, err
		}
		return b, 0, nil
	}
	err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	var e struct {
		Error struct {
			Code      string `json:"code"`
			Retryable bool   `json:"retryable"`
		} `json:"error"`
	}
	json.Unmarshal(b, &e)
	if secs, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && secs > 0 {
		wait = min(time.Duration(secs)*time.Second, callBackoffMax)
	}
	switch {
	case key != "" && e.Error.Retryable:
		return nil, wait, err
	case key == "" && (e.Error.Code == "overloaded" || e.Error.Code == "shutting_down" || e.Error.Code == "fenced"):
		return nil, wait, err // refused before it ran
	case key != "" && (resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable || resp.StatusCode == http.StatusGatewayTimeout):
		return nil, wait, err // a proxy's answer: the node may not have seen it
	}
	return nil, 0, &finalError{err}
}
