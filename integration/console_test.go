package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
)

var consoleShots = flag.String("console.screenshots", "", "write PNG screenshots of the console into this folder (e.g. ../docs)")

// chromium is the path of a Chromium (or Chrome) binary, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser starts a headless Chromium for the test, or skips it.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := chromium()
	if bin == "" {
		t.Skip("no Chromium found (chromium, chromium-browser, google-chrome on PATH): install Debian's package `chromium` to run the console's browser tests (.ci/run does)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // tests run as root in CI containers
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	// The first run starts the browser, with no deadline (a deadline on
	// it would end the browser); the steps run under one afterwards.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium %s: %v", bin, err)
	}
	ctx, cancel3 := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel3)
	return ctx
}

// waitText waits (polling, within the browser context's deadline) until
// the element sel's text contains want.
func waitText(sel, want string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			got, err := textOf(ctx, sel)
			if err == nil && strings.Contains(got, want) {
				return nil
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: text %q does not contain %q (err %v)", sel, got, want, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// textOf is the text of the first element sel matches ("" if none),
// without waiting for it.
func textOf(ctx context.Context, sel string) (string, error) {
	b, _ := json.Marshal(sel)
	return chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf("(document.querySelector(%s)||{}).textContent||''", b)))
}

func shot(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		if *consoleShots == "" {
			return nil
		}
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(*consoleShots, name), png, 0o644)
	})
}

func useToken(token string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SetValue(chromedp.CSS("#token"), token),
		chromedp.Click(chromedp.CSS("#token-form button[type=submit]")),
	)
}

func click(sel string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(sel)) }
func visible(sel string) chromedp.Action[chromedp.Void] {
	return chromedp.WaitVisible(chromedp.CSS(sel))
}

// The console in a real Chromium against a real node with auth on: open an
// object, step the timeline to a past version and see its state, restore
// (confirming the diff) and undo, see a new event arrive live, and see a
// read-only token get no restore button and a call-only token refused.
func TestConsoleBrowser(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	p := serve(t, dir, "--auth=on")
	admin := readAdminToken(t, dir)
	reader := makeToken(t, p.url, dir, "read", "")
	caller := makeToken(t, p.url, dir, "call", "")

	put := func(key, value string) {
		t.Helper()
		if code, body := authDo(t, admin, "POST", p.url+"/v1/objects/kv/demo/rpc/put", fmt.Sprintf(`{"key":%q,"value":%s}`, key, value)); code != 200 {
			t.Fatalf("put: %d %s", code, body)
		}
	}
	put("a", "1")
	put("b", `{"x":2}`)
	put("a", "3")
	for i := range 3 {
		if code, _ := authDo(t, admin, "POST", fmt.Sprintf("%s/v1/objects/counter/c%d/rpc/increment", p.url, i), `{}`); code != 200 {
			t.Fatal("increment")
		}
	}

	// GET / sends a browser to the console; the console's files carry a
	// strict CSP and are served without a token.
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(p.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("GET /: %d Location %q, want 302 to /console/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, err = client.Get(p.url + "/console/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Fatalf("GET /console/: %d CSP %q", resp.StatusCode, csp)
	}

	// Two WebSockets on a chat room, for its page's live count.
	dialRoom := func(who string) *websocket.Conn {
		t.Helper()
		ws := "ws" + strings.TrimPrefix(p.url, "http") + "/v1/objects/chat/live-room/ws?name=" + who
		c, _, err := websocket.DefaultDialer.Dial(ws, http.Header{"Authorization": {"Bearer " + admin}})
		if err != nil {
			t.Fatalf("dial %s: %v", ws, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ann, _ := dialRoom("ann"), dialRoom("bob")

	obj := p.url + "/console/#/object/kv/demo"
	var restoreHidden bool
	steps := []struct {
		name string
		do   chromedp.Action[chromedp.Void]
	}{
		{"open the console", chromedp.Navigate(p.url + "/")},
		{"enter the admin token", useToken(admin)},
		{"see the classes", waitText("#whoami", "scope: admin")},
		{"class counts", waitText("main table", "counter")},
		{"screenshot classes", shot("console-classes.png")},
		{"a class's objects", chromedp.Navigate(p.url + "/console/#/class/counter")},
		{"each with its version and last change", waitText("#objects", "c1")},
		{"and whether it is active", waitText("#objects tr:first-child td.active", "active")},
		{"a room's page", chromedp.Navigate(p.url + "/console/#/object/chat/live-room")},
		{"its live sockets", waitText("#live", "active · 2 WebSockets")},
		{"one leaves", chromedp.Func(func(context.Context, *chromedp.Target) error { return ann.Close() })},
		{"the count follows", waitText("#live", "active · 1 WebSocket")},
		{"open the object", chromedp.Navigate(obj)},
		{"its history", visible("#ev-3")},
		{"its current state", waitText("#state-title", "current, v3")},
		{"current a", waitText("#state-table", "3")},
		{"step to v1", click("#ev-1 button")},
		{"state as of v1", waitText("#state-title", "as of v1")},
		{"v1 has a=1 only", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			s, err := textOf(ctx, "#state-table")
			if err != nil {
				return err
			}
			if !strings.Contains(s, "a") || !strings.Contains(s, "1") || strings.Contains(s, "x") {
				return fmt.Errorf("state at v1 shows %q, want a=1 and no b", s)
			}
			return nil
		})},
		{"screenshot object", shot("console-object.png")},
		{"restore…", click("#restore")},
		{"the diff to confirm", waitText("#restore-diff", "delete b")},
		{"screenshot restore", shot("console-restore.png")},
		{"confirm", click("#restore-confirm")},
		{"the restore arrives live", visible("#ev-4")},
		{"restored state", waitText("#state-title", "current, v4")},
		{"undo", click("#undo")},
		{"the undo arrives live", visible("#ev-5")},
		{"undone state", waitText("#state-table", `{"x":2}`)},
		{"audit", click("#audit")},
		{"audit result", waitText("#audit-result", "chain intact: 5 events")},
		{"a write from elsewhere", chromedp.Func(func(context.Context, *chromedp.Target) error { put("c", `"live"`); return nil })},
		{"arrives live", waitText("#ev-6", `"live"`)},
		{"node page", chromedp.Navigate(p.url + "/console/#/node")},
		{"node numbers", waitText("#node-table", "activations live")},
		{"screenshot node", shot("console-node.png")},

		{"switch to a read-only token", chromedp.Navigate(p.url + "/console/")},
		{"read token", useToken(reader)},
		{"scope read", waitText("#whoami", "scope: read")},
		{"open the object read-only", chromedp.Navigate(obj)},
		{"history readable", visible("#ev-6")},
		{"step back", click("#ev-1 button")},
		{"state as of v1 (read)", waitText("#state-title", "as of v1")},
		{"no restore button", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			var err error
			restoreHidden, err = chromedp.Run(ctx, chromedp.Evaluate[bool]("document.querySelector('#restore').hidden"))
			return err
		})},

		{"switch to a call-only token", chromedp.Navigate(p.url + "/console/")},
		{"call token", useToken(caller)},
		{"no read scope", waitText("#whoami", "no read scope")},
		{"open the object without read", chromedp.Navigate(obj)},
		{"refused", waitText("#status", "Permission refused (403)")},
	}
	for _, s := range steps {
		if err := chromedp.Do(ctx, s.do); err != nil {
			status, _ := textOf(ctx, "#status")
			main, _ := textOf(ctx, "main")
			t.Fatalf("step %q: %v\nstatus: %s\npage: %.2000s", s.name, err, status, main)
		}
		if s.name == "no restore button" && !restoreHidden {
			t.Fatal("a read-only token sees the restore button")
		}
	}
	// The server refuses the read token's restore anyway.
	if code, body := authDo(t, reader, "POST", p.url+"/v1/objects/kv/demo/restore", `{"version":1}`); code != 403 {
		t.Fatalf("restore with a read token: %d %s", code, body)
	}
}
