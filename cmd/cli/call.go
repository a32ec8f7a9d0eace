package cli

import (
	"context"
	"flag"
	"net/http"
	"net/url"
)

func runCall(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "call [flags] <class> <name> <method> [json]")
	base := fs.String("url", "http://127.0.0.1:8080", "gateway URL")
	timeout := timeoutFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, err := withTimeout(ctx, *timeout)
	if err != nil {
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
	u := objectURL(*base, class, name, "rpc/"+url.PathEscape(method), nil)
	out, err := fetch(ctx, http.MethodPost, u, []byte(body))
	if err != nil {
		return err
	}
	_, err = env.Stdout.Write(out)
	return err
}
