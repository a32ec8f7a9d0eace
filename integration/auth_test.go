package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// authDo sends a request with a bearer token ("" for none) and returns the
// status and the body.
func authDo(t *testing.T, token, method, url, body string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// strataCmd runs the strata binary with args and returns its stdout.
func strataCmd(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("strata %v: %w\n%s", args, err, errOut.String())
	}
	return out.String(), nil
}

// A node started with auth on makes the first admin token once, in a 0600
// file of its data folder, names the file in its log (never the token),
// and the CLI uses that file beside the node; tokens made with it are
// scoped, recorded as principals, and refused once revoked.
func TestAuthFirstAdminAndCLI(t *testing.T) {
	dir := t.TempDir()
	p := serve(t, dir, "--auth=on")
	path := filepath.Join(dir, "admin.token")
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, st.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	admin := strings.TrimSpace(string(b))
	if !strings.HasPrefix(admin, "strata_admin_") {
		t.Fatalf("admin token file holds %q", admin)
	}
	if logs := p.output(); !strings.Contains(logs, path) || strings.Contains(logs, admin) {
		t.Fatalf("the log must name the file and never the token:\n%s", logs)
	}

	incr := p.url + "/v1/objects/counter/c1/rpc/increment"
	if code, body := authDo(t, "", "POST", incr, `{"by":1}`); code != 401 {
		t.Fatalf("no token: %d %s", code, body)
	}
	if code, body := authDo(t, admin, "POST", incr, `{"by":1}`); code != 200 {
		t.Fatalf("admin token: %d %s", code, body)
	}
	if code, _ := authDo(t, "", "GET", p.url+"/healthz", ""); code != 200 {
		t.Fatalf("healthz: %d", code)
	}

	// The CLI beside the node takes the admin token from --data.
	out, err := strataCmd(t, nil, "token", "create", "--url", p.url, "--data", dir, "--scope", "call,read", "--classes", "count*", "--name", "app")
	if err != nil {
		t.Fatal(err)
	}
	app := strings.TrimSpace(out)
	id := strings.TrimSuffix(strings.TrimPrefix(app, "strata_"), app[strings.LastIndexByte(app, '_'):])
	if code, body := authDo(t, app, "POST", incr, `{"by":1}`); code != 200 {
		t.Fatalf("app token: %d %s", code, body)
	}
	if code, body := authDo(t, app, "POST", p.url+"/v1/objects/kv/k1/rpc/put", `{"key":"a","value":1}`); code != 403 {
		t.Fatalf("app token on another class: %d %s", code, body)
	}
	// STRATA_TOKEN: call and history as the app.
	if _, err := strataCmd(t, []string{"STRATA_TOKEN=" + app}, "call", "--url", p.url, "counter", "c1", "increment", `{"by":5}`); err != nil {
		t.Fatal(err)
	}
	out, err = strataCmd(t, []string{"STRATA_TOKEN=" + app}, "history", "--url", p.url, "--json", "counter", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, `"principal":"`+id+`"`) != 2 || strings.Count(out, `"principal":"admin"`) != 1 {
		t.Fatalf("history does not say who did what:\n%s", out)
	}
	// Without a token and away from the data folder, refused.
	if _, err := strataCmd(t, nil, "history", "--url", p.url, "--data", t.TempDir(), "counter", "c1"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("history without a token: %v", err)
	}
	out, err = strataCmd(t, nil, "token", "ls", "--url", p.url, "--data", dir)
	if err != nil || !strings.Contains(out, id) || !strings.Contains(out, "admin") || strings.Contains(out, "strata_") {
		t.Fatalf("token ls: %v\n%s", err, out)
	}
	if _, err := strataCmd(t, nil, "token", "revoke", "--url", p.url, "--data", dir, id); err != nil {
		t.Fatal(err)
	}
	if code, body := authDo(t, app, "POST", incr, `{"by":1}`); code != 401 {
		t.Fatalf("revoked token: %d %s", code, body)
	}

	// A restart keeps the tokens and makes no second admin token.
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	p = serve(t, dir, "--auth=on")
	if b2, _ := os.ReadFile(path); string(b2) != string(b) {
		t.Fatal("the admin token file changed at restart")
	}
	code, body := authDo(t, admin, "GET", p.url+"/v1/tokens", "")
	var list struct {
		Tokens []struct {
			ID        string `json:"id"`
			RevokedBy string `json:"revoked_by"`
		}
	}
	json.Unmarshal([]byte(body), &list)
	if code != 200 || len(list.Tokens) != 2 || list.Tokens[1].RevokedBy != "admin" {
		t.Fatalf("tokens after restart: %d %s", code, body)
	}
	if code, _ := authDo(t, app, "POST", p.url+"/v1/objects/counter/c1/rpc/increment", `{"by":1}`); code != 401 {
		t.Fatalf("revoked token after restart: %d", code)
	}
}

// --auth defaults: off on loopback (the quick start needs no token), on
// elsewhere; --auth=off elsewhere refuses to start without
// --insecure-no-auth, which is said loudly.
func TestAuthDefaults(t *testing.T) {
	strataBinary(t)
	p := serve(t, t.TempDir())
	if code, body := authDo(t, "", "POST", p.url+"/v1/objects/counter/c/rpc/increment", `{}`); code != 200 {
		t.Fatalf("loopback without a token: %d %s", code, body)
	}
	p.kill()

	q := launch(t, nil, t.TempDir(), "--http", "0.0.0.0:0", "--auth=off")
	select {
	case <-q.done:
	case <-time.After(time.Minute):
		t.Fatal("--auth=off on 0.0.0.0 did not exit")
	}
	if code := q.cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(q.output(), "--insecure-no-auth") {
		t.Fatalf("--auth=off on 0.0.0.0: exit %d\n%s", code, q.output())
	}

	dir := t.TempDir()
	q = serve(t, dir, "--http", "0.0.0.0:0")
	if code, _ := authDo(t, "", "POST", q.url+"/v1/objects/counter/c/rpc/increment", `{}`); code != 401 {
		t.Fatalf("0.0.0.0 by default: %d, want 401", code)
	}
	if _, err := os.Stat(filepath.Join(dir, "admin.token")); err != nil {
		t.Fatal(err)
	}
	q.kill()

	q = serve(t, t.TempDir(), "--http", "0.0.0.0:0", "--auth=off", "--insecure-no-auth")
	if !strings.Contains(q.output(), "INSECURE") {
		t.Fatalf("--insecure-no-auth is not said loudly:\n%s", q.output())
	}
	if code, _ := authDo(t, "", "POST", q.url+"/v1/objects/counter/c/rpc/increment", `{}`); code != 200 {
		t.Fatalf("--insecure-no-auth: %d", code)
	}
}

// In a cluster, one node makes the first admin token; a token made on one
// node works on every node, its principal travels with forwarded requests,
// and its revocation on one node is refused by the others.
func TestAuthCluster(t *testing.T) {
	c := startCluster(t, 3, "--auth=on")
	made := 0
	for _, nd := range c.nodes {
		if _, err := os.Stat(filepath.Join(nd.dir, "admin.token")); err == nil {
			made++
		}
	}
	if made != 1 {
		t.Fatalf("%d nodes hold an admin token file, want 1", made)
	}
	admin := c.adminToken()
	code, body := authDo(t, admin, "POST", c.URL(0)+"/v1/tokens", `{"scopes":["call","read"]}`)
	var tok struct{ ID, Token string }
	if err := json.Unmarshal([]byte(body), &tok); code != 201 || err != nil {
		t.Fatalf("create on n1: %d %s", code, body)
	}
	// Through node 2, objects spread over the cluster: some run on other
	// nodes, and every event names the token.
	forwarded := 0
	for i := range 12 {
		name := fmt.Sprintf("p%d", i)
		var code int
		var ranOn string
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, node, b, err := rpcAuth(tok.Token, c.URL(1), "counter", name)
			code, ranOn = st, node
			if err == nil && st == 200 || time.Now().After(deadline) {
				break
			}
			_ = b
			time.Sleep(50 * time.Millisecond) // a fresh token reaches n2 through the watch
		}
		if code != 200 {
			t.Fatalf("increment %s via n2: %d", name, code)
		}
		if ranOn != c.Name(1) {
			forwarded++
		}
		code, body := authDo(t, tok.Token, "GET", c.URL(1)+"/v1/objects/counter/"+name+"/history", "")
		if code != 200 || !strings.Contains(body, `"principal":"`+tok.ID+`"`) {
			t.Fatalf("history of %s (ran on %s): %d %s", name, ranOn, code, body)
		}
	}
	if forwarded == 0 {
		t.Fatal("no request was forwarded: the principal's trip is untested")
	}
	if code, body := authDo(t, admin, "DELETE", c.URL(0)+"/v1/tokens/"+tok.ID, ""); code != 200 {
		t.Fatalf("revoke on n1: %d %s", code, body)
	}
	start := time.Now()
	for _, i := range []int{1, 2} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, _ := authDo(t, tok.Token, "POST", c.URL(i)+"/v1/objects/counter/p0/rpc/increment", `{}`)
			if code == 401 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still takes the revoked token: %d", c.Name(i), code)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("revocation on n1 refused by n2 and n3 after %s", time.Since(start).Round(time.Millisecond))
}

// rpcAuth posts an increment with a token and returns the status and the
// node that ran it.
func rpcAuth(token, base, class, name string) (int, string, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("%s/v1/objects/%s/%s/rpc/increment", base, class, name), strings.NewReader(`{}`))
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Strata-Node"), b, err
}
