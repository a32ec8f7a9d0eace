package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// getObject GETs /v1/objects/{class}/{name}/{action}?query and returns the
// body, or the gateway's error.
func getObject(ctx context.Context, base, class, name, action string, q url.Values) (io.ReadCloser, error) {
	return open(ctx, http.MethodGet, objectURL(base, class, name, action, q), nil)
}

// runHistory prints an object's events: a table, or NDJSON with --json;
// with --follow it goes on printing new events until interrupted.
func runHistory(ctx context.Context, env *Env, args []string) error {
	g := newGatewayFlags(env, "history", "history [flags] <class> <name>\n       history --trace [flags] <class> <name> <version>", "gateway URL")
	fs, base := g.FlagSet, g.base
	asJSON := fs.Bool("json", false, "print the events as NDJSON")
	trace := fs.Bool("trace", false, "print the causal trace through event <version>: every turn, in every object, that the request which caused it caused (calls, messages, replies), with causes and changes")
	follow := fs.Bool("follow", false, "after the history, print new events as they are committed, until interrupted")
	from := fs.Uint64("from", 0, "first version")
	to := fs.Uint64("to", 0, "last version (0: the newest)")
	limit := fs.Uint64("limit", 0, "at most this many events (0: all)")
	ctx, err := g.parse(ctx, args)
	if err != nil {
		return err
	}
	if *trace {
		if fs.NArg() != 3 || *follow || *from != 0 || *to != 0 || *limit != 0 {
			fs.Usage()
			return &usageError{"history --trace needs <class> <name> <version> and takes no --follow, --from, --to or --limit"}
		}
		return printTrace(ctx, env, *base, fs.Arg(0), fs.Arg(1), fs.Arg(2), *asJSON)
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return &usageError{"history needs <class> <name>"}
	}
	q := url.Values{}
	for k, v := range map[string]uint64{"from": *from, "to": *to, "limit": *limit} {
		if v != 0 {
			q.Set(k, fmt.Sprint(v))
		}
	}
	if *follow {
		q.Set("follow", "true")
	}
	body, err := getObject(ctx, *base, fs.Arg(0), fs.Arg(1), "history", q)
	if err != nil {
		return err
	}
	defer body.Close()
	if *asJSON {
		_, err := io.Copy(env.Stdout, body)
		if *follow && ctx.Err() != nil {
			return nil // interrupted: the normal end of a follow
		}
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	if *follow {
		fmt.Fprintf(env.Stdout, followFormat, "VERSION", "TIME", "VIA", "METHOD", "REQUEST", "CHANGES")
	} else {
		fmt.Fprintln(tw, "VERSION\tTIME\tVIA\tMETHOD\tREQUEST\tCHANGES")
	}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Version uint64
			Time    time.Time
			Turns   []struct {
				RequestID string `json:"request_id"`
				Method    string
				Via       string
				// ClassVersion: the deployed (JavaScript) class version that ran it.
				ClassVersion uint64 `json:"class_version"`
				Changes      []historyChange
			}
			Error *struct{ Message string }
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("history: %w", err)
		}
		if e.Error != nil {
			return fmt.Errorf("history: %s", e.Error.Message)
		}
		for i, t := range e.Turns {
			cs := changeTexts(t.Changes)
			v, ts := fmt.Sprint(e.Version), e.Time.Format(time.RFC3339Nano)
			if t.ClassVersion > 0 {
				t.Method += fmt.Sprintf(" (class v%d)", t.ClassVersion)
			}
			if i > 0 {
				v, ts = "", ""
			}
			if *follow {
				// Each line as it comes: fixed columns, since a table
				// cannot wait for the widest cell.
				fmt.Fprintf(env.Stdout, followFormat, v, ts, t.Via, t.Method, t.RequestID, strings.Join(cs, "; "))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v, ts, t.Via, t.Method, t.RequestID, strings.Join(cs, "; "))
		}
	}
	if *follow && ctx.Err() != nil {
		return tw.Flush() // interrupted: the normal end of a follow
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return tw.Flush()
}

// historyChange is one change of a history or trace line.
type historyChange struct {
	Op, Key  string
	Old, New json.RawMessage
}

// changeTexts is how the CLI shows a turn's changes.
func changeTexts(changes []historyChange) []string {
	var cs []string
	for _, c := range changes {
		switch c.Op {
		case "put":
			cs = append(cs, fmt.Sprintf("%s: %s → %s", c.Key, orNone(c.Old), c.New))
		case "delete":
			cs = append(cs, fmt.Sprintf("%s: %s → (deleted)", c.Key, orNone(c.Old)))
		default:
			cs = append(cs, strings.TrimSpace(c.Op+" "+c.Key))
		}
	}
	return cs
}

// followFormat is history --follow's line: the columns of the table, at
// fixed widths.
const followFormat = "%-8s  %-30s  %-6s  %-8s  %-24s  %s\n"

func orNone(b json.RawMessage) string {
	if len(b) == 0 {
		return "(none)"
	}
	return string(b)
}

// runState prints an object's storage as of a version or a time.
func runState(ctx context.Context, env *Env, args []string) error {
	g := newGatewayFlags(env, "state", "state [flags] <class> <name>", "gateway URL")
	fs, base := g.FlagSet, g.base
	version := fs.Uint64("version", 0, "the state after this version")
	at := fs.String("at", "", "the state as of this RFC 3339 time")
	prefix := fs.String("prefix", "", "only keys with this prefix")
	asJSON := fs.Bool("json", false, "print the gateway's JSON answer")
	ctx, err := g.parse(ctx, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return &usageError{"state needs <class> <name>"}
	}
	q := url.Values{}
	if *version != 0 {
		q.Set("version", fmt.Sprint(*version))
	}
	if *at != "" {
		q.Set("at", *at)
	}
	if *prefix != "" {
		q.Set("prefix", *prefix)
	}
	body, err := getObject(ctx, *base, fs.Arg(0), fs.Arg(1), "state", q)
	if err != nil {
		return err
	}
	defer body.Close()
	if *asJSON {
		_, err = io.Copy(env.Stdout, body)
		return err
	}
	var st pastState
	if err := json.NewDecoder(body).Decode(&st); err != nil {
		return fmt.Errorf("state: %w", err)
	}
	printState(env.Stdout, st)
	return nil
}

// pastState is the gateway's answer to GET …/state.
type pastState struct {
	Version uint64
	Time    time.Time
	Keys    map[string]json.RawMessage
	Tables  []struct {
		Name    string
		Schema  string
		Columns []string
		RowIDs  []int64
		Rows    [][]json.RawMessage
	}
	Objects []struct{ Type, Name, SQL string } `json:"indexes_and_views"`
}

// printState prints the keys as a table of key and JSON value, then each
// SQL table with its schema as a table of rowid and columns, then the
// indexes and views.
func printState(w io.Writer, st pastState) {
	fmt.Fprintf(w, "version %d at %s\n", st.Version, st.Time.UTC().Format(time.RFC3339Nano))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	if len(st.Keys) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "KEY\tVALUE")
		keys := make([]string, 0, len(st.Keys))
		for k := range st.Keys {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\n", cell(k), cell(string(st.Keys[k])))
		}
		tw.Flush()
	}
	for _, t := range st.Tables {
		fmt.Fprintf(w, "\ntable %s (%d rows): %s\n", t.Name, len(t.Rows), oneLine(t.Schema))
		fmt.Fprintln(tw, "ROWID\t"+strings.Join(t.Columns, "\t"))
		for i, row := range t.Rows {
			cells := make([]string, len(row))
			for j, v := range row {
				cells[j] = sqlCell(v)
			}
			var id int64
			if i < len(t.RowIDs) {
				id = t.RowIDs[i]
			}
			fmt.Fprintf(tw, "%d\t%s\n", id, strings.Join(cells, "\t"))
		}
		tw.Flush()
	}
	if len(st.Objects) > 0 {
		fmt.Fprintln(w)
	}
	for _, o := range st.Objects {
		fmt.Fprintf(w, "%s %s: %s\n", o.Type, o.Name, oneLine(o.SQL))
	}
}

// sqlCell shows a column value: NULL, text as is, numbers and blobs
// ({"base64": …}) as JSON.
func sqlCell(v json.RawMessage) string {
	var s string
	switch {
	case string(v) == "null":
		return "NULL"
	case json.Unmarshal(v, &s) == nil:
		return cell(s)
	}
	return cell(string(v))
}

// cell keeps a value on one table cell: control characters (tabs,
// newlines) are escaped.
func cell(s string) string {
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		q := strconv.Quote(s)
		return q[1 : len(q)-1]
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// auditReport is the gateway's answer to GET …/audit.
type auditReport struct {
	Events   uint64
	OK       bool
	BrokenAt uint64 `json:"broken_at"`
	Version  uint64
	Reason   string
	From     uint64 `json:"from_version"`
	Ckpts    int    `json:"checkpoints"`
}

// scope says what an intact chain covered: from version 1, or from the
// checkpoint a retaining class's log starts after, and the checkpoints
// checked against it.
func (r auditReport) scope() string {
	s := ""
	if r.From > 1 {
		s = fmt.Sprintf(", verified from the checkpoint at version %d (older events dropped by retention)", r.From)
	}
	switch {
	case r.Ckpts == 1:
		s += ", 1 checkpoint matches"
	case r.Ckpts > 1:
		s += fmt.Sprintf(", %d checkpoints match", r.Ckpts)
	}
	return s
}

func fetchAudit(ctx context.Context, base, class, name string) (auditReport, error) {
	var rep auditReport
	body, err := getObject(ctx, base, class, name, "audit", nil)
	if err != nil {
		return rep, err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(&rep); err != nil {
		return rep, fmt.Errorf("audit: %w", err)
	}
	return rep, nil
}

// runAudit verifies hash chains: `strata audit verify <class> <name>`, or
// every object of a class with --all.
func runAudit(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 || args[0] != "verify" {
		return &usageError{"usage: strata audit verify [flags] <class> <name> | --all <class>"}
	}
	g := newGatewayFlags(env, "audit verify", "audit verify [flags] <class> <name> | --all <class>", "gateway URL")
	fs, base := g.FlagSet, g.base
	all := fs.Bool("all", false, "verify every object of the class")
	ctx, err := g.parse(ctx, args[1:])
	if err != nil {
		return err
	}
	if *all && fs.NArg() != 1 || !*all && fs.NArg() != 2 {
		fs.Usage()
		return &usageError{"audit verify needs <class> <name>, or --all <class>"}
	}
	class := fs.Arg(0)
	if !*all {
		rep, err := fetchAudit(ctx, *base, class, fs.Arg(1))
		if err != nil {
			return err
		}
		if !rep.OK {
			fmt.Fprintf(env.Stdout, "%s/%s: BROKEN after %d good events: stream sequence %d (version %d): %s\n", class, fs.Arg(1), rep.Events, rep.BrokenAt, rep.Version, rep.Reason)
			return fmt.Errorf("hash chain broken")
		}
		fmt.Fprintf(env.Stdout, "%s/%s: hash chain intact over %d events%s\n", class, fs.Arg(1), rep.Events, rep.scope())
		return nil
	}
	objs, err := listAll(ctx, *base, class)
	if err != nil {
		return err
	}
	broken, events := 0, uint64(0)
	for i, o := range objs {
		rep, err := fetchAudit(ctx, *base, class, o)
		if err != nil {
			return err
		}
		events += rep.Events
		if !rep.OK {
			broken++
			fmt.Fprintf(env.Stdout, "%s/%s: BROKEN at stream sequence %d (version %d): %s\n", class, o, rep.BrokenAt, rep.Version, rep.Reason)
		}
		fmt.Fprintf(env.Stderr, "\r%s %d/%d objects", bar(i+1, len(objs), 30), i+1, len(objs))
	}
	fmt.Fprintln(env.Stderr)
	fmt.Fprintf(env.Stdout, "%s: %d objects, %d events, %d broken\n", class, len(objs), events, broken)
	if broken > 0 {
		return fmt.Errorf("%d hash chains broken", broken)
	}
	return nil
}

// bar draws a progress bar of width cells.
func bar(done, total, width int) string {
	n := width
	if total > 0 {
		n = done * width / total
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// listedObject is one object of GET /v1/objects/{class}.
type listedObject struct {
	ID, Name string
	Version  uint64
	Updated  time.Time
}

// eachObject pages through the objects of class (optionally by name
// prefix), calling fn for each until it returns false.
func eachObject(ctx context.Context, base, class, prefix string, fn func(listedObject) bool) error {
	cursor := ""
	for {
		q := url.Values{"limit": {"1000"}}
		if prefix != "" {
			q.Set("prefix", prefix)
		}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		b, err := fetch(ctx, http.MethodGet, objectURL(base, class, "", "", q), nil)
		if err != nil {
			return err
		}
		var page struct {
			Objects []listedObject
			Cursor  string
		}
		if err := json.Unmarshal(b, &page); err != nil {
			return fmt.Errorf("list %s: %w", class, err)
		}
		for _, o := range page.Objects {
			if !fn(o) {
				return nil
			}
		}
		if page.Cursor == "" {
			return nil
		}
		cursor = page.Cursor
	}
}

// listAll returns the names of every named object of class.
func listAll(ctx context.Context, base, class string) ([]string, error) {
	var names []string
	err := eachObject(ctx, base, class, "", func(o listedObject) bool {
		if o.Name != "" {
			names = append(names, o.Name)
		}
		return true
	})
	return names, err
}

// runLs lists the objects of a class: `strata ls <class>`.
func runLs(ctx context.Context, env *Env, args []string) error {
	g := newGatewayFlags(env, "ls", "ls [flags] <class>", "gateway URL")
	fs, base := g.FlagSet, g.base
	prefix := fs.String("prefix", "", "only objects whose name starts with this")
	limit := fs.Int("limit", 0, "at most this many objects (0: all)")
	ctx, err := g.parse(ctx, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 1 || *limit < 0 {
		fs.Usage()
		return &usageError{"ls needs <class> and a non-negative --limit"}
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tVERSION\tUPDATED")
	shown := 0
	err = eachObject(ctx, *base, fs.Arg(0), *prefix, func(o listedObject) bool {
		if *limit > 0 && shown == *limit {
			return false
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", o.ID, o.Name, o.Version, o.Updated.Format(time.RFC3339))
		shown++
		return true
	})
	if err != nil {
		return err
	}
	return tw.Flush()
}

// runRestore sets an object back to a past version or time, after asking.
func runRestore(ctx context.Context, env *Env, args []string) error {
	g := newGatewayFlags(env, "restore", "restore [flags] <class> <name>", "gateway URL")
	fs, base := g.FlagSet, g.base
	version := fs.Uint64("version", 0, "restore to the state after this version")
	at := fs.String("at", "", "restore to the state as of this RFC 3339 time")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	ctx, err := g.parse(ctx, args)
	if err != nil {
		return err
	}
	if fs.NArg() != 2 || (*version == 0) == (*at == "") {
		fs.Usage()
		return &usageError{"restore needs <class> <name> and exactly one of --version and --at"}
	}
	class, name := fs.Arg(0), fs.Arg(1)
	if !*yes {
		target := *at
		if *version != 0 {
			target = fmt.Sprint("version ", *version)
		}
		fmt.Fprintf(env.Stderr, "Restore %s/%s to %s? This appends one event; it can be undone. [y/N] ", class, name, target)
		answer, _ := bufio.NewReader(env.stdin()).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return fmt.Errorf("restore cancelled")
		}
	}
	in := map[string]any{}
	if *version != 0 {
		in["version"] = *version
	} else {
		in["at"] = *at
	}
	body, _ := json.Marshal(in)
	b, err := fetch(ctx, http.MethodPost, objectURL(*base, class, name, "restore", nil), body)
	if err != nil {
		return err
	}
	_, err = env.Stdout.Write(b)
	return err
}

// runTail prints every change committed from now on: `strata tail [class]`.
func runTail(ctx context.Context, env *Env, args []string) error {
	g := newGatewayFlags(env, "tail", "tail [flags] [class]", "gateway URL")
	fs, base := g.FlagSet, g.base
	asJSON := fs.Bool("json", false, "print NDJSON")
	ctx, err := g.parse(ctx, args)
	if err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return &usageError{"tail takes at most one class"}
	}
	u := strings.TrimRight(*base, "/") + "/v1/tail"
	if fs.NArg() == 1 {
		u += "?class=" + url.QueryEscape(fs.Arg(0))
	}
	stream, err := open(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	defer stream.Close()
	sc := bufio.NewScanner(stream)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if *asJSON {
			fmt.Fprintln(env.Stdout, sc.Text())
			continue
		}
		var e struct {
			Class, ID, Name string
			Version         uint64
			Time            time.Time
			Turns           []struct {
				Method, Via string
				Writes      []struct{ Op, Key string }
			}
			Error *struct{ Code, Message string }
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("tail: %w", err)
		}
		if e.Error != nil { // the gateway ends a failed stream with its error
			return fmt.Errorf("tail: %s: %s", e.Error.Code, e.Error.Message)
		}
		who := e.Name
		if who == "" {
			who = e.ID
			if len(who) > 16 {
				who = who[:16] + "…"
			}
		}
		for _, t := range e.Turns {
			var ws []string
			for _, w := range t.Writes {
				ws = append(ws, strings.TrimSpace(w.Op+" "+w.Key))
			}
			fmt.Fprintf(env.Stdout, "%s %s/%s v%d %s %s: %s\n", e.Time.Format(time.RFC3339Nano), e.Class, who, e.Version, t.Via, t.Method, strings.Join(ws, ", "))
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted: the normal end of a tail
	}
	return sc.Err()
}
