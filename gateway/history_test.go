package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHistoryRoutes(t *testing.T) {
	f := start(t)
	for _, b := range []string{`{"key":"a","value":1}`, `{"key":"b","value":"x"}`, `{"key":"a","value":2}`} {
		if code, body := f.post("/v1/objects/kv/h/rpc/put", b); code != 200 {
			t.Fatal(code, body)
		}
	}
	code, body, hdr := f.do(http.MethodGet, "/v1/objects/kv/h/history", "")
	lines := strings.Split(body, "\n")
	if code != 200 || hdr.Get("Content-Type") != "application/x-ndjson" || len(lines) != 3 {
		t.Fatalf("history: %d %q\n%s", code, hdr.Get("Content-Type"), body)
	}
	var third struct {
		Version uint64
		Turns   []struct {
			Method, Via string
			Changes     []struct {
				Op, Key  string
				Old, New json.RawMessage
			}
		}
	}
	if err := json.Unmarshal([]byte(lines[2]), &third); err != nil {
		t.Fatal(err)
	}
	c := third.Turns[0].Changes[0]
	if third.Version != 3 || third.Turns[0].Method != "put" || third.Turns[0].Via != "rpc" || c.Key != "a" || string(c.Old) != "1" || string(c.New) != "2" {
		t.Fatalf("third event: %s", lines[2])
	}
	if code, body, _ := f.do(http.MethodGet, "/v1/objects/kv/h/history?from=2&limit=1", ""); code != 200 || strings.Count(body, "\n") != 0 || !strings.Contains(body, `"version":2`) {
		t.Fatalf("history from 2 limit 1: %d %s", code, body)
	}
	if code, body, _ := f.do(http.MethodGet, "/v1/objects/kv/h/state?version=2", ""); code != 200 || !strings.Contains(body, `"keys":{"a":1,"b":"x"}`) {
		t.Fatalf("state at 2: %d %s", code, body)
	}
	if code, body, _ := f.do(http.MethodGet, "/v1/objects/kv/h/state?prefix=a", ""); code != 200 || !strings.Contains(body, `"keys":{"a":2}`) {
		t.Fatalf("state now, prefix a: %d %s", code, body)
	}
	if code, body, _ := f.do(http.MethodGet, "/v1/objects/kv/h/audit", ""); code != 200 || !strings.Contains(body, `"events":3,"ok":true`) {
		t.Fatalf("audit: %d %s", code, body)
	}
	before := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct{ path, code string }{
		{"/v1/objects/kv/h/state?version=4", "bad_range"},
		{"/v1/objects/kv/h/state?at=yesterday", "bad_input"},
		{"/v1/objects/kv/h/state?at=" + before, "bad_range"},
		{"/v1/objects/kv/h/state?version=1&at=" + before, "bad_input"},
		{"/v1/objects/kv/h/history?limit=-1", "bad_input"},
		{"/v1/objects/kv/h/history?from=3&to=2", "bad_range"},
	} {
		if code, body, _ := f.do(http.MethodGet, c.path, ""); code != 400 || !strings.Contains(body, `"code":"`+c.code+`"`) {
			t.Errorf("%s: %d %s, want 400 %s", c.path, code, body, c.code)
		}
	}
	if code, _, _ := f.do(http.MethodPost, "/v1/objects/kv/h/history", ""); code != 405 {
		t.Errorf("POST history: %d", code)
	}
}

func TestRestoreAndListRoutes(t *testing.T) {
	f := start(t)
	for _, b := range []string{`{"key":"a","value":1}`, `{"key":"a","value":2}`} {
		if code, body := f.post("/v1/objects/kv/r/rpc/put", b); code != 200 {
			t.Fatal(code, body)
		}
	}
	if code, body := f.post("/v1/objects/kv/r/restore", `{"version":1}`); code != 200 || body != `{"deleted":0,"put":1,"restored_to_version":1}` {
		t.Fatalf("restore: %d %s", code, body)
	}
	if code, body := f.post("/v1/objects/kv/r/rpc/get", `{"key":"a"}`); !strings.Contains(body, `"value":1`) {
		t.Fatalf("after restore: %d %s", code, body)
	}
	for _, b := range []string{`{}`, `{"version":1,"at":"2026-01-01T00:00:00Z"}`, `{"at":"noon"}`, `{"version":"1"}`} {
		if code, body := f.post("/v1/objects/kv/r/restore", b); code != 400 || !strings.Contains(body, "bad_input") {
			t.Errorf("restore %s: %d %s", b, code, body)
		}
	}
	if code, body := f.post("/v1/objects/kv/r/restore", `{"version":9}`); code != 400 || !strings.Contains(body, "bad_range") {
		t.Errorf("restore to version 9: %d %s", code, body)
	}
	code, body, _ := f.do(http.MethodGet, "/v1/objects/kv/r/history", "")
	if code != 200 || strings.Count(body, "\n") != 2 || !strings.Contains(body, `"method":"restore to version 1","via":"system"`) {
		t.Fatalf("history after restore (one restore event, nothing from bad input): %s", body)
	}
	f.node.Projector.Flush(t.Context())
	code, body, _ = f.do(http.MethodGet, "/v1/objects/kv?prefix=r&limit=5", "")
	if code != 200 || !strings.Contains(body, `"name":"r","version":3`) {
		t.Fatalf("list: %d %s", code, body)
	}
	for _, path := range []string{"/v1/objects/kv?limit=-2", "/v1/objects/kv?cursor=xyz", "/v1/objects/Bad"} {
		if code, body, _ := f.do(http.MethodGet, path, ""); code != 400 {
			t.Errorf("%s: %d %s", path, code, body)
		}
	}
	if code, _, _ := f.do(http.MethodGet, "/v1/objects/nosuch", ""); code != 404 {
		t.Errorf("list of unknown class: %d", code)
	}
}

func TestTailRoute(t *testing.T) {
	f := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url+"/v1/tail?class=kv", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	// The tail's consumers start just after the headers: write until a kv
	// line arrives, with counter writes that must not show.
	for i := 0; ; i++ {
		f.post("/v1/objects/counter/t/rpc/increment", "")
		f.post("/v1/objects/kv/t/rpc/put", fmt.Sprintf(`{"key":"k%d","value":1}`, i))
		select {
		case l := <-lines:
			if !strings.Contains(l, `"class":"kv"`) || !strings.Contains(l, `"op":"put"`) || strings.Contains(l, "counter") {
				t.Fatalf("tail line: %s", l)
			}
			if code, body, _ := f.do(http.MethodGet, "/v1/tail?class=Bad", ""); code != 400 {
				t.Fatalf("tail of a bad class: %d %s", code, body)
			}
			return
		case <-time.After(50 * time.Millisecond):
		}
		if i > 100 {
			t.Fatal("no tail line")
		}
	}
}

// TestHistoryFollowRoute: ?follow=true sends the history, then each new
// event of the object from the next version on, flushed as it comes; a
// bad follow value, or follow with to or limit, is a 400.
func TestHistoryFollowRoute(t *testing.T) {
	f := start(t)
	f.post("/v1/objects/kv/fo/rpc/put", `{"key":"a","value":1}`)
	for _, q := range []string{"follow=maybe", "follow=true&limit=1", "follow=1&to=3"} {
		if code, body, _ := f.do(http.MethodGet, "/v1/objects/kv/fo/history?"+q, ""); code != 400 {
			t.Fatalf("history?%s: %d %s", q, code, body)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.url+"/v1/objects/kv/fo/history?follow=true", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for want := 1; want <= 3; want++ {
		if want > 1 {
			f.post("/v1/objects/kv/other/rpc/put", `{"key":"a","value":0}`)
			f.post("/v1/objects/kv/fo/rpc/put", fmt.Sprintf(`{"key":"a","value":%d}`, want))
		}
		if !sc.Scan() {
			t.Fatalf("follow ended before version %d: %v", want, sc.Err())
		}
		var e struct {
			Version int
			Turns   []struct {
				Changes []struct{ Old, New json.RawMessage }
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if c := e.Turns[0].Changes[0]; e.Version != want || string(c.New) != fmt.Sprint(want) || want > 1 && string(c.Old) != fmt.Sprint(want-1) {
			t.Fatalf("follow line %d: %s", want, sc.Bytes())
		}
	}
}
