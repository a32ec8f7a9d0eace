package cli

import (
	"context"
	"flag"
	"net/http"
	"net/url"
	"time"
)

func runCall(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "call [flags] <class> <name> <method> [json]")
	base := fs.String("url", "http://127.0.0.1:8080", "gateway URL")
	var ca clientAuth
	ca.register(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx = ca.with(ctx)
	if fs.NArg() < 3 || fs.NArg() > 4 {
		fs.Usage()
		return &usageError{"call needs <class> <name> <method> [json]"}
	}
	class, name, method := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	body := "{}"
	if fs.NArg() == 4 {
		body = fs.Arg(3)
	}
	u := objectURL(*base, class, name, "rpc/"+url.PathEscape(method), nil)
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	out, err := fetch(ctx, http.MethodPost, u, []byte(body))
	if err != nil {
		return err
	}
	_, err = env.Stdout.Write(out)
	return err
}
