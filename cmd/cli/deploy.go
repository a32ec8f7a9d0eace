package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// ErrReplayDiffers: replay found turns whose writes or answer differ (exit 1).
var ErrReplayDiffers = errors.New("replay: the new code differs from the recorded history")

// classFlags are the flags of deploy, classes, rollback and replay.
type classFlags struct {
	base    *string
	timeout *time.Duration
	ca      clientAuth
}

func newClassFlags(fs *flag.FlagSet) *classFlags {
	c := &classFlags{
		base:    fs.String("url", "http://127.0.0.1:8080", "gateway URL"),
		timeout: fs.Duration("timeout", 60*time.Second, "request timeout"),
	}
	c.ca.register(fs)
	return c
}

func (c *classFlags) url(parts ...string) string {
	u := strings.TrimRight(*c.base, "/") + "/v1/classes"
	for _, p := range parts {
		u += "/" + url.PathEscape(p)
	}
	return u
}

// defaultClassName is a file's base name without extension, lower-cased:
// counter.ts deploys class "counter".
func defaultClassName(file string) string {
	base := filepath.Base(file)
	if i := strings.IndexByte(base, '.'); i > 0 {
		base = base[:i]
	}
	return strings.ToLower(base)
}

type classVersionOut struct {
	Class         string    `json:"class"`
	Version       uint64    `json:"version"`
	Export        string    `json:"export"`
	Source        string    `json:"source"`
	CodeBytes     int       `json:"code_bytes"`
	CreatedAt     time.Time `json:"created_at"`
	CreatedBy     string    `json:"created_by"`
	RollbackOf    uint64    `json:"rollback_of"`
	TurnTimeoutMs int64     `json:"turn_timeout_ms"`
}

// runDeploy is `strata deploy [--class NAME] FILE`.
func runDeploy(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("deploy", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "deploy [flags] <file.js|file.ts>")
	cf := newClassFlags(fs)
	class := fs.String("class", "", "class name (default: the file's name, lower-cased, without extension)")
	export := fs.String("export", "", "the exported class to run (default: the only one, or the one named like the class)")
	turnTimeout := fs.Duration("turn-timeout", 0, "CPU-time limit of one turn of this class (0: the node's --js-turn-timeout)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return &usageError{"deploy needs one file"}
	}
	file := fs.Arg(0)
	src, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if *class == "" {
		*class = defaultClassName(file)
	}
	req := map[string]any{"source": string(src), "filename": filepath.Base(file), "export": *export}
	if *turnTimeout > 0 {
		req["turn_timeout"] = turnTimeout.String()
	}
	body, _ := json.Marshal(req)
	ctx = cf.ca.with(ctx)
	ctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	b, err := fetch(ctx, http.MethodPut, cf.url(*class), body)
	if err != nil {
		return err
	}
	var v classVersionOut
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("deploy: answer: %w", err)
	}
	_, err = fmt.Fprintf(env.Stdout, "class %q version %d (export %s, %d bytes)\n", v.Class, v.Version, v.Export, v.CodeBytes)
	return err
}

// runClasses is `strata classes [NAME]`.
func runClasses(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("classes", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "classes [flags] [name]")
	cf := newClassFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return &usageError{"classes takes at most one class name"}
	}
	ctx = cf.ca.with(ctx)
	ctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	if fs.NArg() == 0 {
		b, err := fetch(ctx, http.MethodGet, cf.url(), nil)
		if err != nil {
			return err
		}
		var out struct {
			Classes []struct {
				Name     string          `json:"name"`
				Kind     string          `json:"kind"`
				Objects  int             `json:"objects"`
				Version  uint64          `json:"version"`
				Versions int             `json:"versions"`
				Latest   classVersionOut `json:"latest"`
			} `json:"classes"`
		}
		if err := json.Unmarshal(b, &out); err != nil {
			return fmt.Errorf("classes: answer: %w", err)
		}
		fmt.Fprintln(tw, "CLASS\tKIND\tOBJECTS\tVERSION\tVERSIONS\tEXPORT\tDEPLOYED\tBY")
		for _, c := range out.Classes {
			if c.Versions == 0 { // built in
				fmt.Fprintf(tw, "%s\t%s\t%d\t-\t-\t-\t-\t-\n", c.Name, c.Kind, c.Objects)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\n", c.Name, c.Kind, c.Objects, c.Version, c.Versions, c.Latest.Export, c.Latest.CreatedAt.Format(time.RFC3339), c.Latest.CreatedBy)
		}
		return tw.Flush()
	}
	b, err := fetch(ctx, http.MethodGet, cf.url(fs.Arg(0)), nil)
	if err != nil {
		return err
	}
	var out struct {
		Versions []classVersionOut `json:"versions"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("classes: answer: %w", err)
	}
	fmt.Fprintln(tw, "VERSION\tEXPORT\tSOURCE\tBYTES\tDEPLOYED\tBY\tNOTE")
	for _, v := range out.Versions {
		note := ""
		if v.RollbackOf != 0 {
			note = fmt.Sprintf("rollback to v%d", v.RollbackOf)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%s\t%s\n", v.Version, v.Export, v.Source, v.CodeBytes, v.CreatedAt.Format(time.RFC3339), v.CreatedBy, note)
	}
	return tw.Flush()
}

// runRollback is `strata rollback NAME VERSION`.
func runRollback(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("rollback", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "rollback [flags] <class> <version>")
	cf := newClassFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return &usageError{"rollback needs <class> <version>"}
	}
	version, err := strconv.ParseUint(fs.Arg(1), 10, 64)
	if err != nil || version == 0 {
		return &usageError{fmt.Sprintf("version %q: want a positive integer", fs.Arg(1))}
	}
	body, _ := json.Marshal(map[string]any{"version": version})
	ctx = cf.ca.with(ctx)
	ctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	b, err := fetch(ctx, http.MethodPost, cf.url(fs.Arg(0), "rollback"), body)
	if err != nil {
		return err
	}
	var v classVersionOut
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("rollback: answer: %w", err)
	}
	_, err = fmt.Fprintf(env.Stdout, "class %q version %d (the code of version %d)\n", v.Class, v.Version, v.RollbackOf)
	return err
}

// runReplay is `strata replay --class NAME --code FILE [--object NAME | --sample N]`.
func runReplay(ctx context.Context, env *Env, args []string) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = flagUsage(fs, "replay [flags] --class <name> --code <file> [--object <name>]... [--sample N]")
	cf := newClassFlags(fs)
	class := fs.String("class", "", "the deployed class whose recorded turns to replay")
	code := fs.String("code", "", "the new code (.js or .ts) to run them against")
	export := fs.String("export", "", "the exported class in --code (default: as deploy picks it)")
	var objs multiFlag
	fs.Var(&objs, "object", "an object name to replay (repeatable)")
	sample := fs.Int("sample", 0, "replay this many objects of the class (0 with no --object: 20)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *class == "" || *code == "" || fs.NArg() != 0 {
		fs.Usage()
		return &usageError{"replay needs --class and --code"}
	}
	src, err := os.ReadFile(*code)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{"source": string(src), "filename": filepath.Base(*code), "export": *export, "objects": []string(objs), "sample": *sample})
	ctx = cf.ca.with(ctx)
	ctx, cancel := context.WithTimeout(ctx, *cf.timeout)
	defer cancel()
	b, err := fetch(ctx, http.MethodPost, cf.url(*class, "replay"), body)
	if err != nil {
		return err
	}
	var rep replayReportOut
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("replay: answer: %w", err)
	}
	for _, d := range rep.Diffs {
		fmt.Fprintf(env.Stdout, "%s v%d turn %d (%s %s, recorded by class v%d):\n", d.Object, d.Version, d.Turn, d.Via, d.Method, d.ClassVersion)
		for _, l := range d.Lines {
			fmt.Fprintf(env.Stdout, "  %s\n", l)
		}
	}
	fmt.Fprintf(env.Stdout, "replayed %d turns of %d objects: %d differ, %d skipped\n", rep.Turns, rep.Objects, len(rep.Diffs), rep.Skipped)
	if len(rep.Diffs) > 0 {
		return ErrReplayDiffers
	}
	return nil
}

type replayReportOut struct {
	Objects int `json:"objects"`
	Turns   int `json:"turns"`
	Skipped int `json:"skipped"`
	Diffs   []struct {
		Object       string   `json:"object"`
		Version      uint64   `json:"version"`
		Turn         int      `json:"turn"`
		Via          string   `json:"via"`
		Method       string   `json:"method"`
		ClassVersion uint64   `json:"class_version"`
		Lines        []string `json:"lines"`
	} `json:"diffs"`
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
