package jsclass_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/strata-objects/strata/classes"
	"github.com/strata-objects/strata/gateway"
	"github.com/strata-objects/strata/internal/testnode"
	"github.com/strata-objects/strata/jsclass"
	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

type jsNode struct {
	*testnode.Node
	Reg *jsclass.Registry
	URL string
}

// startJS starts a real node (embedded JetStream, Badger) with the built-in
// classes, deployed JavaScript classes and a gateway over HTTP.
func startJS(t *testing.T, edit func(*jsclass.Config)) *jsNode {
	t.Helper()
	return startJSWith(t, nil, edit)
}

// startJSWith is startJS with Go classes beside the built-in ones.
func startJSWith(t *testing.T, extra []*objects.Class, edit func(*jsclass.Config)) *jsNode {
	t.Helper()
	var reg *jsclass.Registry
	var cls *log.Classes
	builtin := map[string]bool{}
	for _, c := range classes.All() {
		builtin[c.Name()] = true
	}
	n := testnode.Start(t, append(classes.All(), extra...), func(cfg *objects.Config) {
		var err error
		cls, err = cfg.Log.OpenClasses(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		jc := jsclass.Config{Classes: cls, Log: cfg.Log, Builtin: func(n string) bool { return builtin[n] }}
		if edit != nil {
			edit(&jc)
		}
		reg, err = jsclass.New(jc)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Resolve = reg.Resolve
	})
	t.Cleanup(cls.Close) // before the node stops
	reg.SetLister(n.Runtime.ListObjects)
	gw, err := gateway.New(gateway.Config{Backend: n.Runtime, Classes: reg})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gw.CloseWebSockets(ctx)
		srv.Close()
	})
	return &jsNode{Node: n, Reg: reg, URL: srv.URL}
}

func (n *jsNode) deploy(t *testing.T, class, file, src string) *log.ClassVersion {
	t.Helper()
	cv, err := n.Reg.Deploy(context.Background(), jsclass.DeployRequest{Class: class, Filename: file, Source: []byte(src)})
	if err != nil {
		t.Fatalf("deploy %s: %v", class, err)
	}
	return cv
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b))
}

func errCode(t *testing.T, body string) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	return e.Error.Code
}

func quoteJSON(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
