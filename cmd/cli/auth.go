package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/log"
)

// Auth at serve (docs/security.md): --auth is on unless every listen
// address (the gateway's, and the embedded NATS server's client and route
// addresses) is loopback; off with a reachable one needs
// --insecure-no-auth, said out loud. With auth on, the first node to start
// with no token makes an admin token and writes it to the data folder.

// adminTokenFile is the first admin token's file in the data folder.
const adminTokenFile = "admin.token"

// firstAdminID is the first admin token's id: a fixed id, so that of
// several nodes starting at once exactly one creates it (the store's
// create-if-absent).
const firstAdminID = "admin"

type authFlags struct {
	mode       string // auto, on, off
	insecureOK bool
}

func (a *authFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.mode, "auth", "auto", "bearer tokens: 'on', 'off', or 'auto' (on unless every listen address, --http, --nats-listen and --cluster-listen, is loopback)")
	fs.BoolVar(&a.insecureOK, "insecure-no-auth", false, "INSECURE: allow --auth=off on an address other machines can reach; anyone who reaches it can read, write, restore and wipe every object")
}

// on settles whether auth is on for a node listening on listens (flag
// name → address; an empty address listens nowhere).
func (a *authFlags) on(listens map[string]string, logger *slog.Logger) (bool, error) {
	loopback := true
	var open []string
	for _, name := range slices.Sorted(maps.Keys(listens)) {
		if addr := listens[name]; addr != "" && !isLoopbackAddr(addr) {
			loopback = false
			open = append(open, name+" "+addr)
		}
	}
	reachable := strings.Join(open, ", ")
	switch a.mode {
	case "on":
		return true, nil
	case "auto":
		return !loopback, nil
	case "off":
		if loopback {
			return false, nil
		}
		if !a.insecureOK {
			return false, &usageError{fmt.Sprintf("--auth=off with %s, which other machines can reach: refused. Use loopback addresses, turn auth on, or add --insecure-no-auth if you really mean it", reachable)}
		}
		logger.Warn("INSECURE: auth is off on an address other machines can reach (--insecure-no-auth): anyone who reaches it can read, write, restore and wipe every object", "listening", reachable)
		return false, nil
	}
	return false, &usageError{fmt.Sprintf("--auth %q: want on, off or auto", a.mode)}
}

// isLoopbackAddr says whether host:port listens on loopback only. An
// empty host (every interface) and names other than localhost are not.
func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return log.IsLoopback(host)
}

// ensureFirstAdmin makes the first admin token when the store has none:
// the file first (mode 0600, so a crash before the store has it leaves a
// stale file the next start replaces, never a token nobody holds), then
// the record with the store's create-if-absent; a node that loses that
// race removes its file.
func ensureFirstAdmin(ctx context.Context, tokens *log.Tokens, dataDir string, logger *slog.Logger) error {
	if len(tokens.Tokens()) > 0 {
		return nil
	}
	rec, secret, err := gateway.NewToken(firstAdminID, "first admin", []string{gateway.ScopeAdmin}, "strata serve (first start)", time.Now())
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, adminTokenFile)
	if err := writeSecretFile(path, secret+"\n"); err != nil {
		return err
	}
	err = tokens.CreateToken(ctx, rec)
	if errors.Is(err, log.ErrTokenExists) {
		os.Remove(path) // another node made it
		return nil
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("first admin token: %w", err)
	}
	logger.Info("first admin token written; keep it secret, make narrower tokens with it (strata token create)", "path", path)
	return nil
}

// writeSecretFile writes path with mode 0600, atomically.
func writeSecretFile(path, content string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name()) // after the rename, nothing
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// clientAuth is the credential flags of the client subcommands: --token
// (or STRATA_TOKEN), else the admin token file of --data when the command
// runs beside the node.
type clientAuth struct {
	token   string
	dataDir string
}

func (c *clientAuth) register(fs *flag.FlagSet) {
	fs.StringVar(&c.token, "token", "", "bearer token; prefer STRATA_TOKEN (a flag shows in ps). Without it, the admin token file of --data is used if there is one")
	fs.StringVar(&c.dataDir, "data", "./data", "a node's data folder, whose admin token file is used when no --token is given")
}

// bearer is the token to send, "" for none.
func (c *clientAuth) bearer() string {
	if c.token != "" {
		return c.token
	}
	b, err := os.ReadFile(filepath.Join(c.dataDir, adminTokenFile))
	if err != nil {
		return ""
	}
	tok, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(tok)
}

type bearerKey struct{}

// with returns ctx carrying the token, which open sends.
func (c *clientAuth) with(ctx context.Context) context.Context {
	return withBearer(ctx, c.bearer())
}

func withBearer(ctx context.Context, token string) context.Context {
	if token == "" {
		return ctx
	}
	return context.WithValue(ctx, bearerKey{}, token)
}

func bearerFrom(ctx context.Context) string {
	t, _ := ctx.Value(bearerKey{}).(string)
	return t
}
