package projector

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/strata-objects/strata/log"
)

// maxRune is the greatest UTF-8 sequence, f4 8f bf bf: keys are UTF-8
// (log.Event.Validate), so no key sorts after a run of these.
const maxRune = "\U0010FFFF"

// TestListModel checks List against a sorted-map model on random keys,
// including the empty key, NULs and the greatest code point, which are
// where prefix and reverse bounds go wrong.
func TestListModel(t *testing.T) {
	seed := uint64(20240601)
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)
	alphabet := []string{"a", "b", "\x00", "\u00ff", "ab", maxRune, maxRune + maxRune}
	randFrom := func(alphabet []string) string {
		var b strings.Builder
		for range rng.IntN(6) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	randKey := func() string { return randFrom(alphabet) }
	// Bounds need not be keys: they may hold bytes no UTF-8 key has.
	randBound := func() string { return randFrom(append(alphabet, "\xff", "\xf4\x90")) }

	p := open(t, Config{Dir: t.TempDir()})
	s := newStream(t)
	o := newObj("kv", "listed")
	// Neighbours on both sides of o, so that running off o's range shows.
	neighbours := []obj{{"kv", prevID(o.id)}, {"kv", nextID(o.id)}, {"kv-a", o.id}, {"k", o.id}}
	model := map[string]string{}
	for round := range 30 {
		var ws []log.Write
		for range 20 {
			k := randKey()
			if rng.IntN(4) == 0 {
				ws = append(ws, del(k))
				delete(model, k)
			} else {
				v := fmt.Sprint(round, "-", rng.Uint32())
				ws = append(ws, put(k, v))
				model[k] = v
			}
		}
		recs := []log.Record{s.next(o, ws)}
		for _, n := range neighbours {
			recs = append(recs, s.next(n, []log.Write{put(randKey(), "neighbour"), put(strings.Repeat(maxRune, 8), "neighbour")}))
		}
		mustApply(t, p, recs...)

		for range 40 {
			opts := ListOptions{Reverse: rng.IntN(2) == 0}
			if rng.IntN(2) == 0 {
				opts.Prefix = randBound()
			}
			if rng.IntN(2) == 0 {
				opts.Start = randBound()
			}
			if rng.IntN(2) == 0 {
				opts.End = randBound()
			}
			if rng.IntN(3) == 0 {
				opts.Limit = 1 + rng.IntN(5)
			}
			want := listModel(model, opts)
			var got []string
			err := p.List(o.class, o.id, opts, func(k string, v []byte) bool {
				if string(v) != model[k] {
					t.Errorf("List %+v: %q = %q, want %q", opts, k, v, model[k])
				}
				got = append(got, k)
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("List %+v\n got %q\nwant %q", opts, got, want)
			}
		}
	}
}

// listModel is List's specification.
func listModel(m map[string]string, opts ListOptions) []string {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, opts.Prefix) && (opts.Start == "" || k >= opts.Start) && (opts.End == "" || k < opts.End) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	if opts.Reverse {
		slices.Reverse(keys)
	}
	if opts.Limit > 0 && len(keys) > opts.Limit {
		keys = keys[:opts.Limit]
	}
	return keys
}

func nextID(id log.ID) log.ID {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]++
		if id[i] != 0 {
			break
		}
	}
	return id
}

func prevID(id log.ID) log.ID {
	for i := len(id) - 1; i >= 0; i-- {
		id[i]--
		if id[i] != 0xff {
			break
		}
	}
	return id
}

// TestListStops: fn returning false ends the listing, in both directions.
func TestListStops(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	o := newObj("kv", "stops")
	mustApply(t, p, s.next(o, []log.Write{put("a", "1"), put("b", "2"), put("c", "3")}))
	for _, reverse := range []bool{false, true} {
		var got []string
		err := p.List(o.class, o.id, ListOptions{Reverse: reverse}, func(k string, _ []byte) bool {
			got = append(got, k)
			return len(got) < 2
		})
		if err != nil || len(got) != 2 {
			t.Errorf("reverse=%v: listed %q, %v; want 2 keys", reverse, got, err)
		}
	}
	if err := p.List(o.class, o.id, ListOptions{Limit: -1}, func(string, []byte) bool { return true }); err == nil {
		t.Error("negative limit accepted")
	}
}

// TestListEdgeIDs: objects whose ids are all 0x00 or all 0xff, the ends
// of the key space, list correctly in both directions.
func TestListEdgeIDs(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	var ff log.ID
	for i := range ff {
		ff[i] = 0xff
	}
	for _, o := range []obj{{"kv", log.ID{}}, {"kv", ff}} {
		mustApply(t, p, s.next(o, []log.Write{put("a", "1"), put(maxRune, "2")}))
	}
	for _, o := range []obj{{"kv", log.ID{}}, {"kv", ff}} {
		for _, reverse := range []bool{false, true} {
			var got []string
			err := p.List(o.class, o.id, ListOptions{Reverse: reverse}, func(k string, _ []byte) bool {
				got = append(got, k)
				return true
			})
			want := []string{"a", maxRune}
			if reverse {
				want = []string{maxRune, "a"}
			}
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("id %x reverse=%v: %q, %v", o.id[:1], reverse, got, err)
			}
		}
	}
}

func TestSuccessor(t *testing.T) {
	for in, want := range map[string]string{
		"a":         "b",
		"a\xff":     "b",
		"a\xfe\xff": "a\xff",
		"\x00":      "\x01",
		maxRune:     "\xf4\x8f\xbf\xc0",
		"\xff\xff":  "", // none
		"":          "", // none
	} {
		got, ok := successor([]byte(in))
		if ok != (want != "") || string(got) != want {
			t.Errorf("successor(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
