package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretsInit: the first run writes a random password, mode 0600;
// a second run keeps it; a password given that differs from the file's is
// refused and changes nothing; a short one is refused.
func TestSecretsInit(t *testing.T) {
	t.Setenv("STRATA_NATS_PASSWORD", "")
	dir := t.TempDir()
	path := filepath.Join(dir, natsPasswordFile)
	var out bytes.Buffer
	env := &Env{Stdout: &out, Stderr: &out}
	run := func(args ...string) error {
		return Run(context.Background(), env, append([]string{"secrets", "init", "--dir", dir}, args...))
	}
	if err := run(); err != nil {
		t.Fatalf("first init: %v\n%s", err, out.String())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", path, fi.Mode().Perm())
	}
	first, _ := os.ReadFile(path)
	if pw := strings.TrimSpace(string(first)); len(pw) != 48 {
		t.Fatalf("generated password has %d characters, want 48 hex", len(pw))
	}
	if err := run(); err != nil {
		t.Fatalf("second init: %v", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, first) {
		t.Fatal("second init replaced the password")
	}
	t.Setenv("STRATA_NATS_PASSWORD", "another-password-entirely")
	if err := run(); exitCode(err) != 2 || !strings.Contains(err.Error(), errSecretDiffers.Error()) {
		t.Fatalf("init with a different password: %v, want a usage error", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, first) {
		t.Fatal("init with a different password changed the file")
	}
	t.Setenv("STRATA_NATS_PASSWORD", "short")
	if err := run(); exitCode(err) != 2 {
		t.Fatalf("init with a short password: %v, want a usage error", err)
	}

	own := t.TempDir()
	t.Setenv("STRATA_NATS_PASSWORD", "my-own-password-here")
	if err := Run(context.Background(), env, []string{"secrets", "init", "--dir", own}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(own, natsPasswordFile)); string(b) != "my-own-password-here\n" {
		t.Fatalf("own password written as %q", b)
	}
	if err := Run(context.Background(), env, []string{"secrets"}); exitCode(err) != 2 {
		t.Fatalf("secrets with no subcommand: %v", err)
	}
}
