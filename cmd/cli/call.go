package cli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

func runCall(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "call [flags] <class> <name> <method> [json]")
	base := fs.String("url", "http://127.0.0.1:8080", "gateway URL")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 3 || fs.NArg() > 4 {
		fs.Usage()
		return &usageError{"call needs <class> <name> <method> [json]"}
	}
	class, name, method := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	body := "{}"
	if fs.NArg() == 4 {
		body = fs.Arg(3)
	}
	u := strings.TrimRight(*base, "/") + "/v1/objects/" + url.PathEscape(class) + "/" + url.PathEscape(name) + "/rpc/" + url.PathEscape(method)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader([]byte(body)))
	if err != nil {
		return &usageError{err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("call %s: %w", u, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("call %s: read answer: %w", u, err)
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(out))
	}
	_, err = env.Stdout.Write(out)
	return err
}
