package projector

import (
	"fmt"
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
