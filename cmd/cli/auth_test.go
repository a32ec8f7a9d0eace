package cli

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// --auth=auto is off only when every listen address is loopback; --auth=off
// with a reachable one needs --insecure-no-auth, which is logged.
func TestAuthFlagsOn(t *testing.T) {
	loop := map[string]string{"--http": "127.0.0.1:8080", "--nats-listen": "[::1]:0", "--cluster-listen": "localhost:6222"}
	open := func(name, addr string) map[string]string {
		m := map[string]string{"--http": "127.0.0.1:8080", "--nats-listen": "127.0.0.1:0"}
		m[name] = addr
		return m
	}
	cases := []struct {
		mode     string
		insecure bool
		listens  map[string]string
		want     bool
		usage    string // a usage error containing this
		logged   string
	}{
		{"auto", false, loop, false, "", ""},
		{"auto", false, map[string]string{"--http": "127.0.0.1:8080", "--nats-listen": ""}, false, "", ""},
		{"auto", false, open("--http", "0.0.0.0:8080"), true, "", ""},
		{"auto", false, open("--http", ":8080"), true, "", ""},
		{"auto", false, open("--http", "example.com:8080"), true, "", ""},
		{"auto", false, open("--nats-listen", "0.0.0.0:4222"), true, "", ""},
		{"auto", false, open("--cluster-listen", "10.0.0.5:6222"), true, "", ""},
		{"on", false, loop, true, "", ""},
		{"off", false, loop, false, "", ""},
		{"off", false, open("--http", "0.0.0.0:8080"), false, "--http 0.0.0.0:8080", ""},
		{"off", false, open("--cluster-listen", "10.0.0.5:6222"), false, "--cluster-listen 10.0.0.5:6222", ""},
		{"off", true, open("--http", "0.0.0.0:8080"), false, "", "INSECURE"},
		{"maybe", false, loop, false, "want on, off or auto", ""},
	}
	for _, c := range cases {
		var logs bytes.Buffer
		a := authFlags{mode: c.mode, insecureOK: c.insecure}
		got, err := a.on(c.listens, slog.New(slog.NewTextHandler(&logs, nil)))
		var ue *usageError
		switch {
		case c.usage != "":
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.usage) {
				t.Errorf("%s %v: err %v, want a usage error with %q", c.mode, c.listens, err, c.usage)
			}
		case err != nil || got != c.want:
			t.Errorf("%s %v: %v %v, want %v", c.mode, c.listens, got, err, c.want)
		}
		if !strings.Contains(logs.String(), c.logged) || c.logged == "" && logs.Len() > 0 {
			t.Errorf("%s %v: logged %q, want %q", c.mode, c.listens, logs.String(), c.logged)
		}
	}
}

// tokenScopes turns --scope and --classes into the scopes of a token.
func TestTokenScopes(t *testing.T) {
	cases := []struct{ scope, classes, want string }{
		{"read", "", "read"},
		{"call", "", "call"},
		{"call,read", "counter,chat-*", "call:counter call:chat-* read"},
		{"admin", "", "admin"},
	}
	for _, c := range cases {
		got, err := tokenScopes(c.scope, c.classes)
		if err != nil || strings.Join(got, " ") != c.want {
			t.Errorf("tokenScopes(%q, %q) = %v %v, want %s", c.scope, c.classes, got, err, c.want)
		}
	}
	for _, bad := range [][2]string{{"", ""}, {"root", ""}, {"read", "counter"}, {"call", "Bad/Class"}} {
		if _, err := tokenScopes(bad[0], bad[1]); err == nil {
			t.Errorf("tokenScopes(%q, %q) accepted", bad[0], bad[1])
		}
	}
}
