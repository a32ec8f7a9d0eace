package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// natsPasswordFile is the node-to-node password's file in a secrets
// folder; docker-compose.yml's nodes read it with --nats-password-file.
const natsPasswordFile = "nats.password"

// minPasswordLen is the shortest NATS password secrets init accepts.
const minPasswordLen = 12

// runSecrets is `strata secrets init`: docker-compose.yml's one-shot
// service, run before the nodes, that makes the cluster's secrets in a
// volume the nodes share, so that the first `docker compose up` needs no
// step before it and no secret is in an image or the repository.
func runSecrets(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || args[0] != "init" {
		return &usageError{"secrets needs a subcommand: init"}
	}
	fs := flag.NewFlagSet("secrets init", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "secrets init [flags]")
	dir := fs.String("dir", "/secrets", "folder of the cluster's secrets, shared by the nodes (a volume)")
	password := fs.String("nats-password", "", "the node-to-node password to write instead of a random one; prefer STRATA_NATS_PASSWORD (a flag shows in ps)")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{fmt.Sprintf("secrets init takes no arguments, got %q", fs.Args())}
	}
	if *password != "" && len(*password) < minPasswordLen {
		return &usageError{fmt.Sprintf("STRATA_NATS_PASSWORD has %d characters, want %d or more", len(*password), minPasswordLen)}
	}
	logger := slog.New(slog.NewTextHandler(env.Stderr, nil))
	path := filepath.Join(*dir, natsPasswordFile)
	kept, err := initSecret(path, *password)
	if err != nil {
		return err
	}
	if kept {
		logger.Info("NATS password kept", "path", path)
	} else {
		logger.Info("NATS password written", "path", path)
	}
	return nil
}

// errSecretDiffers is secrets init given a password other than the one
// its folder already holds: the nodes' data was made with that one, so it
// is not replaced silently.
var errSecretDiffers = errors.New("the secrets folder holds a different password")

// initSecret writes path (mode 0600) with want, or a random password if
// want is empty, unless path exists: then it is kept, and kept is true.
func initSecret(path, want string) (kept bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		have, _, _ := strings.Cut(strings.TrimRight(string(b), "\r\n"), "\n")
		if have == "" {
			return false, fmt.Errorf("secrets init: %s is empty; remove it to make a new one", path)
		}
		if want != "" && want != have {
			return false, &usageError{fmt.Sprintf("secrets init: %s: %v; remove the secrets volume to replace it (every node must then restart)", path, errSecretDiffers)}
		}
		return true, nil
	case !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("secrets init: %w", err)
	}
	if want == "" {
		r := make([]byte, 24)
		if _, err := rand.Read(r); err != nil {
			return false, fmt.Errorf("secrets init: %w", err)
		}
		want = hex.EncodeToString(r)
	}
	if err := writeSecretFile(path, want+"\n"); err != nil {
		return false, fmt.Errorf("secrets init: %w", err)
	}
	return false, nil
}

// runHealth is `strata health`: GET /healthz of a gateway, exit status 0
// if it answers 200. It is the compose file's healthcheck, so that an
// image with no shell and no curl can have one.
func runHealth(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("health", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "health [flags]")
	base := fs.String("url", "http://127.0.0.1:8080", "gateway URL")
	timeout := fs.Duration("timeout", 5*time.Second, "request timeout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*base, "/")+"/healthz", nil)
	if err != nil {
		return &usageError{fmt.Sprintf("--url %q: %v", *base, err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: GET %s: %s", req.URL, resp.Status)
	}
	fmt.Fprintln(env.Stdout, "ok")
	return nil
}
