package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// The client subcommands (call, history, state, restore, audit, ls, tail,
// alarms) talk to a node's gateway. These are their one way to do it.

// answerBytesMax bounds an answer a subcommand reads whole.
const answerBytesMax = 64 << 20

// open sends a request and returns the answer's body when the status is
// 2xx; otherwise the gateway's error, with its status.
func open(ctx context.Context, method, u string, body []byte) (io.ReadCloser, error) {
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

// fetch is open, reading the whole answer.
func fetch(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	rc, err := open(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
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
