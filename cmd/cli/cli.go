// Package cli is the strata command line, importable so that a user's own
// server binary is the same program with their classes:
//
//	func main() { cli.Main(append(classes.All(), myapp.Ledger())...) }
//
// One file per subcommand, each on the standard flag package. Every flag
// has a STRATA_* environment equivalent (--idle-timeout is
// STRATA_IDLE_TIMEOUT); a flag given on the command line wins.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/strata-objects/strata/objects"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// Env is what a subcommand runs with: its classes and its streams.
type Env struct {
	Classes []*objects.Class
	Stdin   io.Reader // nil: no input
	Stdout  io.Writer
	Stderr  io.Writer
}

func (e *Env) stdin() io.Reader {
	if e.Stdin == nil {
		return strings.NewReader("")
	}
	return e.Stdin
}

func commands() []command {
	return []command{
		{"serve", "run a node: embedded NATS + Badger + HTTP gateway", runServe},
		{"call", "call an object's RPC method over HTTP", runCall},
		{"alarms", "list pending (ls [class]) or dead alarms, retry dead ones", runAlarms},
		{"outbox", "list an object's pending messages (ls class name) or every dead letter, retry dead ones", runOutbox},
		{"rebuild", "rebuild the Badger snapshot from the log (server stopped)", runRebuild},
		{"bench", "measure the standard workloads against the raw JetStream limit", runBench},
		{"history", "print an object's events with causes and diffs", runHistory},
		{"state", "print an object's storage as of a version or time", runState},
		{"restore", "set an object back to a past version or time (one new event)", runRestore},
		{"audit", "verify an object's hash chain: audit verify <class> <name>", runAudit},
		{"ls", "list the objects of a class", runLs},
		{"tail", "print every change as it is committed", runTail},
		{"cluster", "show the cluster's nodes, their state and objects", runCluster},
		{"token", "create, list (ls) or revoke bearer tokens (admin scope)", runToken},
		{"secrets", "make a cluster's secrets once, in a folder its nodes share (secrets init)", runSecrets},
		{"health", "exit 0 if a gateway answers GET /healthz (a container healthcheck)", runHealth},
		{"deploy", "deploy a JavaScript/TypeScript class as its next version: deploy [--class NAME] FILE", runDeploy},
		{"classes", "list deployed classes, or one class's versions", runClasses},
		{"rollback", "redeploy an old version of a class as its next: rollback NAME VERSION", runRollback},
		{"replay", "run new code against a class's recorded turns and report differences (writes nothing)", runReplay},
	}
}

// Main runs the command line with classes and exits.
func Main(classes ...*objects.Class) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, &Env{Classes: classes, Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}, os.Args[1:])
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "strata:", err)
		}
		os.Exit(exitCode(err))
	}
}

// Run runs one subcommand; ctx ends on SIGINT or SIGTERM.
func Run(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.Stderr)
		return flag.ErrHelp
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	usage(env.Stderr)
	return &usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: strata <command> [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nrun 'strata <command> -h' for its flags")
}

type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var ue *usageError
	if errors.As(err, &ue) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

// parseFlags parses args, then fills every flag not given on the command
// line from its STRATA_* variable.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := envName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	if len(errs) > 0 {
		return &usageError{errors.Join(errs...).Error()}
	}
	return nil
}

func envName(flagName string) string {
	return "STRATA_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// flagUsage prints a flag set's flags with their environment names.
func flagUsage(fs *flag.FlagSet, synopsis string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "usage: strata %s\n\nflags (each also as STRATA_<NAME>):\n", synopsis)
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		sort.Strings(names)
		for _, n := range names {
			f := fs.Lookup(n)
			fmt.Fprintf(w, "  --%s (%s, default %q)\n      %s\n", n, envName(n), f.DefValue, f.Usage)
		}
	}
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, &usageError{fmt.Sprintf("--log-level %q: want debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
