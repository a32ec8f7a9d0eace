package projector

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/strata-objects/strata/log"
)

func TestObjectsListing(t *testing.T) {
	p := open(t, Config{})
	var recs []log.Record
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("user-%02d", i)
		if i%3 == 0 {
			name = fmt.Sprintf("team-%02d", i)
		}
		e := &log.Event{Format: log.FormatVersion, Class: "kv", ID: log.ID{byte(i), 7}, Name: name, Version: 1, Time: int64(i),
			Turns: []log.Turn{{Cause: log.Cause{Via: log.ViaRPC}, Writes: []log.Write{{Op: log.OpPut, Key: "k", Value: []byte("v")}}}}}
		data, err := log.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, log.Record{Seq: uint64(i + 1), Data: data, Event: e})
	}
	other := *recs[0].Event
	other.Class = "counter"
	data, _ := log.Encode(&other)
	recs = append(recs, log.Record{Seq: 99, Data: data, Event: &other})
	if err := p.Apply(recs); err != nil {
		t.Fatal(err)
	}
	// Pages of 7 through the whole class, then the name filter.
	var all []string
	var after *log.ID
	for {
		var page []ObjectInfo
		err := p.Objects("kv", after, "", func(o ObjectInfo) bool { page = append(page, o); return len(page) < 7 })
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page {
			all = append(all, o.Meta.Name)
		}
		if len(page) < 7 {
			break
		}
		after = &page[len(page)-1].ID
	}
	if len(all) != 30 || all[0] != "team-00" || all[29] != "user-29" {
		t.Fatalf("paged listing: %d objects %v", len(all), all)
	}
	var teams int
	p.Objects("kv", nil, "team-", func(o ObjectInfo) bool { teams++; return true })
	if teams != 10 {
		t.Fatalf("%d objects named team-*, want 10", teams)
	}
}

// TestEachAlarmAfterPages: reading the pending-alarm index a page at a
// time from a cursor visits every alarm once, in key order, across
// classes, also when the alarm a cursor names was removed meanwhile.
func TestEachAlarmAfterPages(t *testing.T) {
	p := open(t, Config{InMemory: true})
	s := newStream(t)
	var recs []log.Record
	for _, o := range []obj{newObj("a", "x"), newObj("a", "y"), newObj("b", "x")} {
		recs = append(recs, s.next(o, []log.Write{setAlarm("", 1), setAlarm("n1", 2), setAlarm("n2", 3)}))
	}
	if err := p.Apply(recs); err != nil {
		t.Fatal(err)
	}
	var all []AlarmCursor
	if err := p.EachAlarm("", func(class string, id log.ID, name string, _ int64) error {
		all = append(all, AlarmCursor{class, id, name})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(all) != 9 {
		t.Fatalf("%d alarms, want 9", len(all))
	}
	errFull := errors.New("full")
	page := func(after AlarmCursor, n int) []AlarmCursor {
		var got []AlarmCursor
		err := p.EachAlarmAfter(after, func(class string, id log.ID, name string, _ int64) error {
			if len(got) == n {
				return errFull
			}
			got = append(got, AlarmCursor{class, id, name})
			return nil
		})
		if err != nil && !errors.Is(err, errFull) {
			t.Fatal(err)
		}
		return got
	}
	var paged []AlarmCursor
	for c := (AlarmCursor{}); ; {
		got := page(c, 2)
		if len(got) == 0 {
			break
		}
		paged = append(paged, got...)
		c = got[len(got)-1]
	}
	if !reflect.DeepEqual(paged, all) {
		t.Fatalf("paged %v\nwant %v", paged, all)
	}
	// The cursor's own alarm deleted: the next page starts after where it was.
	cur := all[4]
	o := obj{cur.Class, cur.ID}
	if err := p.Apply([]log.Record{s.next(o, []log.Write{delAlarm(cur.Name)})}); err != nil {
		t.Fatal(err)
	}
	if got := page(cur, 1); len(got) != 1 || got[0] != all[5] {
		t.Fatalf("after a deleted cursor: %v, want %v", got, all[5])
	}
}
