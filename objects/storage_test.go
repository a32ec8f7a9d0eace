package objects

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"testing"
)

type turnFn = func(c *Ctx, s *scratch) (any, error)

func get(key string) turnFn {
	return func(c *Ctx, _ *scratch) (any, error) {
		v, ok, err := c.Storage().Get(key)
		if !ok {
			return "<absent>", err
		}
		return string(v), err
	}
}

func put(kvs ...string) turnFn {
	return func(c *Ctx, _ *scratch) (any, error) {
		for i := 0; i < len(kvs); i += 2 {
			if err := c.Storage().Put(kvs[i], []byte(kvs[i+1])); err != nil {
				return nil, err
			}
		}
		return "ok", nil
	}
}

func list(opts ListOptions) turnFn {
	return func(c *Ctx, _ *scratch) (any, error) {
		kvs, err := c.Storage().List(opts)
		return render(kvs), err
	}
}

func render(kvs []KV) string {
	var b strings.Builder
	for _, kv := range kvs {
		fmt.Fprintf(&b, "%s=%s ", kv.Key, kv.Value)
	}
	return strings.TrimSpace(b.String())
}

// TestStorageSemantics runs scenarios of turns against a real node. Each
// step is one turn and its expected answer; "flush" steps let the
// projector catch up, so reads cross the write set, the overlay and Badger.
func TestStorageSemantics(t *testing.T) {
	errBoom := errors.New("boom")
	type step struct {
		fn      turnFn
		want    any
		wantErr error
		flush   bool
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"put then get", []step{
			{fn: put("a", "1"), want: "ok"},
			{fn: get("a"), want: "1"},
			{fn: get("b"), want: "<absent>"},
		}},
		{"read your writes inside a turn", []step{
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				s := c.Storage()
				s.Put("k", []byte("v1"))
				v, _, _ := s.Get("k")
				s.Put("k", []byte(string(v)+"+v2"))
				existed, _ := s.Delete("gone")
				v, _, err := s.Get("k")
				return fmt.Sprintf("%s %v", v, existed), err
			}, want: "v1+v2 false"},
			{fn: get("k"), want: "v1+v2"},
		}},
		{"failed turn leaves nothing", []step{
			{fn: put("a", "1"), want: "ok"},
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				c.Storage().Put("a", []byte("2"))
				c.Storage().Put("b", []byte("2"))
				return nil, errBoom
			}, wantErr: errBoom},
			{fn: get("a"), want: "1"},
			{fn: get("b"), want: "<absent>"},
		}},
		{"transaction rolled back by its error", []step{
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				s := c.Storage()
				s.Put("outer", []byte("kept"))
				err := s.Transaction(func(tx *Storage) error {
					tx.Put("inner", []byte("x"))
					tx.Put("outer", []byte("overwritten"))
					if v, _, _ := tx.Get("inner"); string(v) != "x" {
						return fmt.Errorf("tx cannot read its own write: %q", v)
					}
					return errBoom
				})
				if !errors.Is(err, errBoom) {
					return nil, fmt.Errorf("transaction returned %v", err)
				}
				return "ok", nil
			}, want: "ok"},
			{fn: get("outer"), want: "kept"},
			{fn: get("inner"), want: "<absent>"},
		}},
		{"transaction committed joins the turn", []step{
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				err := c.Storage().Transaction(func(tx *Storage) error { return tx.Put("t", []byte("1")) })
				v, _, _ := c.Storage().Get("t")
				return string(v), err
			}, want: "1"},
			{fn: get("t"), want: "1"},
		}},
		{"delete and delete many report existence", []step{
			{fn: put("a", "1", "b", "2", "c", "3"), want: "ok", flush: true},
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				e1, _ := c.Storage().Delete("a")
				e2, _ := c.Storage().Delete("a")
				n, err := c.Storage().DeleteMany([]string{"b", "c", "zz"})
				return fmt.Sprint(e1, e2, n), err
			}, want: "true false 2"},
			{fn: list(ListOptions{}), want: ""},
		}},
		{"delete all masks the snapshot, later puts survive", []step{
			{fn: put("a", "1", "b", "2"), want: "ok", flush: true},
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				c.Storage().DeleteAll()
				return "ok", c.Storage().Put("c", []byte("3"))
			}, want: "ok"},
			{fn: list(ListOptions{}), want: "c=3"},
			{fn: get("a"), want: "<absent>", flush: true},
			{fn: list(ListOptions{}), want: "c=3"},
		}},
		{"get many", []step{
			{fn: put("a", "1", "b", "2"), want: "ok"},
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				m, err := c.Storage().GetMany([]string{"a", "b", "x"})
				return fmt.Sprintf("%d %s %s", len(m), m["a"], m["b"]), err
			}, want: "2 1 2"},
		}},
		{"put many is all or nothing", []step{
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				return nil, c.Storage().PutMany(map[string][]byte{"ok": []byte("1"), "": []byte("bad key")})
			}, wantErr: ErrInvalidKey},
			{fn: list(ListOptions{}), want: ""},
		}},
		{"list options across snapshot, overlay and write set", []step{
			{fn: put("a1", "s", "a2", "s", "a3", "s", "b1", "s"), want: "ok", flush: true},
			{fn: put("a2", "o", "a4", "o"), want: "ok"}, // overlay (maybe not yet projected)
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				s := c.Storage()
				s.Put("a5", []byte("w"))
				s.Delete("a1")
				var out []string
				for _, o := range []ListOptions{
					{Prefix: "a"},
					{Prefix: "a", Reverse: true},
					{Prefix: "a", Limit: 2},
					{Prefix: "a", Reverse: true, Limit: 2},
					{Start: "a3", End: "b1"},
					{Start: "a3"},
					{End: "a3"},
				} {
					kvs, err := s.List(o)
					if err != nil {
						return nil, err
					}
					out = append(out, render(kvs))
				}
				return strings.Join(out, " | "), nil
			}, want: "a2=o a3=s a4=o a5=w | a5=w a4=o a3=s a2=o | a2=o a3=s | a5=w a4=o | a3=s a4=o a5=w | a3=s a4=o a5=w b1=s | a2=o"},
		}},
		{"bad input is refused before anything is written", []step{
			{fn: func(c *Ctx, _ *scratch) (any, error) { return nil, c.Storage().Put("", []byte("x")) }, wantErr: ErrInvalidKey},
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				return nil, c.Storage().Put(strings.Repeat("k", KeyBytesMax+1), nil)
			}, wantErr: ErrTooLarge},
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				return nil, c.Storage().Put("k", make([]byte, ValueBytesMax+1))
			}, wantErr: ErrTooLarge},
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				for i := 0; ; i++ { // a write set past 1 MiB
					if err := c.Storage().Put(fmt.Sprint("k", i), make([]byte, ValueBytesMax)); err != nil {
						return nil, err
					}
				}
			}, wantErr: ErrTooLarge},
			{fn: func(c *Ctx, _ *scratch) (any, error) {
				_, err := c.Storage().List(ListOptions{Limit: -1})
				return nil, err
			}, wantErr: ErrBadInput},
			{fn: list(ListOptions{}), want: ""},
		}},
	}
	h := newHarness(t)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprint("case-", i)
			for j, st := range tc.steps {
				got, err := h.do(name, st.fn)
				if st.wantErr != nil {
					if !errors.Is(err, st.wantErr) {
						t.Fatalf("step %d: err %v, want %v", j, err, st.wantErr)
					}
				} else if err != nil {
					t.Fatalf("step %d: %v", j, err)
				} else if !reflect.DeepEqual(got, st.want) {
					t.Fatalf("step %d: got %q, want %q", j, got, st.want)
				}
				if st.flush {
					h.flush()
				}
			}
		})
	}
	// The refused turns appended nothing: that object has no events at all.
	if v := h.lastVersion("scratch", fmt.Sprint("case-", len(cases)-1)); v != 0 {
		t.Fatalf("bad input appended %d events", v)
	}
}

// TestListAgainstModel drives random puts, deletes, clears and lists and
// checks every List against a sorted map, with the projector flushed at
// random so entries sit in all layers.
func TestListAgainstModel(t *testing.T) {
	h := newHarness(t)
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[string]string{}
	keys := func() string { return fmt.Sprintf("k%02d", rng.IntN(40)) }
	for round := 0; round < 60; round++ {
		// One turn of random writes, with a nested transaction that
		// sometimes fails.
		staged := map[string]*string{}
		cleared := false
		h.must("model", func(c *Ctx, _ *scratch) (any, error) {
			s := c.Storage()
			for i := 0; i < 1+rng.IntN(6); i++ {
				k := keys()
				switch r := rng.IntN(20); {
				case r == 0:
					s.DeleteAll()
					staged, cleared = map[string]*string{}, true
				case r < 6:
					s.Delete(k)
					staged[k] = nil
				default:
					v := fmt.Sprint(round, "-", i)
					s.Put(k, []byte(v))
					staged[k] = &v
				}
			}
			_ = s.Transaction(func(tx *Storage) error {
				tx.Put(keys(), []byte("never"))
				return errors.New("rolled back")
			})
			return nil, nil
		})
		if cleared {
			model = map[string]string{}
		}
		for k, v := range staged {
			if v == nil {
				delete(model, k)
			} else {
				model[k] = *v
			}
		}
		if rng.IntN(3) == 0 {
			h.flush()
		}
		opts := ListOptions{Reverse: rng.IntN(2) == 0, Limit: rng.IntN(8)}
		if rng.IntN(2) == 0 {
			opts.Start = keys()
		}
		if rng.IntN(2) == 0 {
			opts.End = keys()
		}
		if rng.IntN(4) == 0 {
			opts.Prefix = "k1"
		}
		got := h.must("model", list(opts)).(string)
		if want := modelList(model, opts); got != want {
			t.Fatalf("round %d list %+v:\n got %q\nwant %q", round, opts, got, want)
		}
	}
}

func modelList(m map[string]string, o ListOptions) string {
	var keys []string
	for k := range m {
		if o.contains(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	if o.Reverse {
		for i, j := 0, len(keys)-1; i < j; i, j = i+1, j-1 {
			keys[i], keys[j] = keys[j], keys[i]
		}
	}
	if o.Limit > 0 && len(keys) > o.Limit {
		keys = keys[:o.Limit]
	}
	kvs := make([]KV, len(keys))
	for i, k := range keys {
		kvs[i] = KV{k, []byte(m[k])}
	}
	return render(kvs)
}
