package objects

import (
	"sort"
	"strings"

	"github.com/strata-objects/strata/log"
)

// A read sees, top to bottom: the innermost explicit transaction's write
// set, the enclosing ones, the turn's write set, the activation's overlay
// (writes of events not yet confirmed by the projector), and finally the
// Badger snapshot. Each of the upper levels is a layer: keys it decides,
// and whether it cleared everything below it (DeleteAll).

// entry is one key's state in a layer.
type entry struct {
	val []byte
	del bool
	at  int64  // alarms only: due time, Unix nanoseconds
	ver uint64 // overlay only: version of the event that wrote it
}

type layer struct {
	keys    map[string]entry
	cleared bool // every key below this layer reads as absent (not alarms)
	alarms  map[string]entry
}

func (l *layer) set(key string, e entry) {
	if l.keys == nil {
		l.keys = make(map[string]entry)
	}
	l.keys[key] = e
}

// resolve finds key in layers (top first). decided reports whether some
// layer settled it; if not, the snapshot below has the answer.
func resolve(layers []*layer, key string) (val []byte, ok, decided bool) {
	for _, l := range layers {
		if e, hit := l.keys[key]; hit {
			return e.val, !e.del, true
		}
		if l.cleared {
			return nil, false, true
		}
	}
	return nil, false, false
}

// ListOptions selects a range of keys, as Durable Objects' list() does.
// Keys are ordered by their bytes. Start is inclusive, End exclusive; zero
// values mean unbounded. Limit 0 means no limit.
type ListOptions struct {
	Prefix  string
	Start   string
	End     string
	Reverse bool
	Limit   int
}

func (o ListOptions) contains(key string) bool {
	return strings.HasPrefix(key, o.Prefix) &&
		(o.Start == "" || key >= o.Start) &&
		(o.End == "" || key < o.End)
}

// KV is one listed key and value.
type KV struct {
	Key   string
	Value []byte
}

// baseLister iterates the snapshot in the order opts asks for, at most
// limit entries (0: all), stopping when fn returns false.
type baseLister func(opts ListOptions, limit int, fn func(key string, val []byte) bool) error

// listMerged lists the keys visible through layers over the snapshot.
func listMerged(layers []*layer, opts ListOptions, base baseLister) ([]KV, error) {
	type item struct {
		key string
		val []byte
		ok  bool
	}
	// The keys the layers decide, resolved, in list order.
	seen := map[string]bool{}
	var touched []item
	masked := false
	for _, l := range layers {
		for k := range l.keys {
			if seen[k] || !opts.contains(k) {
				continue
			}
			seen[k] = true
			v, ok, _ := resolve(layers, k)
			touched = append(touched, item{k, v, ok})
		}
		if l.cleared {
			masked = true
			break // layers below a clear are invisible
		}
	}
	less := func(a, b string) bool {
		if opts.Reverse {
			return a > b
		}
		return a < b
	}
	sort.Slice(touched, func(i, j int) bool { return less(touched[i].key, touched[j].key) })

	var out []KV
	full := func() bool { return opts.Limit > 0 && len(out) >= opts.Limit }
	i := 0
	emitTouchedBefore := func(key string, all bool) {
		for i < len(touched) && !full() && (all || less(touched[i].key, key)) {
			if touched[i].ok {
				out = append(out, KV{touched[i].key, cloneBytes(touched[i].val)})
			}
			i++
		}
	}
	if !masked {
		// A touched key can hide at most one snapshot entry, so this many
		// snapshot entries always suffice to fill the limit.
		limit := 0
		if opts.Limit > 0 {
			limit = opts.Limit + len(touched)
		}
		err := base(opts, limit, func(key string, val []byte) bool {
			emitTouchedBefore(key, false)
			if full() {
				return false
			}
			if !seen[key] {
				out = append(out, KV{key, val})
			}
			return !full()
		})
		if err != nil {
			return nil, err
		}
	}
	emitTouchedBefore("", true)
	return out, nil
}

// writeSet is one turn's (or one nested transaction's) pending writes:
// a layer plus the first-write order of keys, so the event is deterministic.
type writeSet struct {
	layer
	parent     *writeSet
	order      []string
	alarmOrder []string // alarm names in first-write order
	sends      []log.Message
	bytes      int             // includes the parent's, so the turn's limit covers nesting
	sql        []log.SQLChange // SQL row and schema changes, in order (sql.go)
	// savepoint is the SQL savepoint of a nested write set's transaction
	// ("" if none: SQL was not in use when it began), so that sqlRebuild
	// can open it again.
	savepoint string
}

func newWriteSet(parent *writeSet) *writeSet {
	ws := &writeSet{parent: parent}
	if parent != nil {
		ws.bytes = parent.bytes
	}
	return ws
}

func writeCost(key string, val []byte) int { return len(key) + len(val) + writeOverheadBytes }

// stage records key's new state if the turn's budget allows it.
func (w *writeSet) stage(key string, e entry) error {
	cost := writeCost(key, e.val)
	old, had := w.keys[key]
	if had {
		cost -= writeCost(key, old.val)
	}
	if w.bytes+cost > WriteSetBytesMax {
		return tooLarge("write set", w.bytes+cost, WriteSetBytesMax)
	}
	if !had {
		w.order = append(w.order, key)
	}
	w.set(key, e)
	w.bytes += cost
	return nil
}

func (w *writeSet) clear() {
	w.keys = nil
	w.order = nil
	w.cleared = true
	if w.parent != nil {
		w.bytes = w.parent.bytes + writeOverheadBytes
	} else {
		w.bytes = writeOverheadBytes
	}
}

func (w *writeSet) empty() bool {
	return !w.cleared && len(w.order) == 0 && len(w.alarmOrder) == 0 && len(w.sends) == 0 && len(w.sql) == 0
}

// absorb merges a committed nested transaction into w.
func (w *writeSet) absorb(child *writeSet) {
	if child.cleared {
		w.keys, w.order, w.cleared = nil, nil, true
	}
	for _, k := range child.order {
		if _, had := w.keys[k]; !had {
			w.order = append(w.order, k)
		}
		w.set(k, child.keys[k])
	}
	for _, name := range child.alarmOrder {
		if _, had := w.alarms[name]; !had {
			w.alarmOrder = append(w.alarmOrder, name)
		}
		w.setAlarm(name, child.alarms[name])
	}
	w.sends = append(w.sends, child.sends...)
	w.sql = append(w.sql, child.sql...)
	w.bytes = child.bytes
}

// chain returns the write sets from innermost to outermost as layers.
func (w *writeSet) chain() []*layer {
	var ls []*layer
	for s := w; s != nil; s = s.parent {
		ls = append(ls, &s.layer)
	}
	return ls
}

// writes renders the write set as the event's write list: one DeleteAll
// first if the turn cleared storage, then each key's final state in the
// order the turn first wrote it.
func (w *writeSet) writes() []log.Write {
	out := make([]log.Write, 0, len(w.order)+1)
	if w.cleared {
		out = append(out, log.Write{Op: log.OpDeleteAll})
	}
	for _, k := range w.order {
		e := w.keys[k]
		if e.del {
			out = append(out, log.Write{Op: log.OpDelete, Key: k})
		} else {
			out = append(out, log.Write{Op: log.OpPut, Key: k, Value: e.val})
		}
	}
	for _, name := range w.alarmOrder {
		e := w.alarms[name]
		if e.del {
			out = append(out, log.Write{Op: log.OpDeleteAlarm, Key: name, At: e.at})
		} else {
			out = append(out, log.Write{Op: log.OpSetAlarm, Key: name, At: e.at})
		}
	}
	return out
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append(make([]byte, 0, len(b)), b...)
}
