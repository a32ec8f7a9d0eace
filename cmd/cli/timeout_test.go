package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// silentServer accepts connections and never answers; it returns its URL.
func silentServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or answered
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + ln.Addr().String()
}

// TestClientTimeout: every client command gives up on a gateway that
// accepts and never answers, after its --timeout, with ErrNoAnswer.
func TestClientTimeout(t *testing.T) {
	u := silentServer(t)
	cmds := [][]string{
		{"call", "kv", "x", "get", `{"key":"a"}`},
		{"history", "kv", "x"},
		{"history", "--follow", "kv", "x"},
		{"state", "kv", "x"},
		{"restore", "--yes", "--version", "1", "kv", "x"},
		{"audit", "verify", "kv", "x"},
		{"audit", "verify", "--all", "kv"},
		{"ls", "kv"},
		{"tail"},
		{"alarms", "dead"},
		{"cluster"},
	}
	for _, c := range cmds {
		args := append([]string{c[0], "--url", u, "--timeout", "300ms"}, c[1:]...)
		if c[0] == "audit" {
			args = append([]string{"audit", "verify", "--url", u, "--timeout", "300ms"}, c[2:]...)
		}
		errc := make(chan error, 1)
		go func() {
			var out bytes.Buffer
			errc <- Run(context.Background(), &Env{Stdout: &out, Stderr: &out}, args)
		}()
		select {
		case err := <-errc:
			if !errors.Is(err, ErrNoAnswer) {
				t.Errorf("strata %s: %v, want ErrNoAnswer", strings.Join(args, " "), err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("strata %s hangs on a gateway that never answers", strings.Join(args, " "))
		}
	}
}

// TestTailErrorLine: a tail stream that ends with the gateway's error line
// (what the gateway writes when the log fails mid-stream) makes `strata
// tail` return that error, not panic on the line's missing id. The server
// here writes exactly that line: the real failure needs a log broken
// mid-stream.
func TestTailErrorLine(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		fmt.Fprintln(w, `{"class":"kv","id":"ab","version":1,"seq":1,"time":"2026-01-01T00:00:00Z","turns":[{"via":"rpc","method":"put","writes":[{"op":"put","key":"k"}]}]}`)
		fmt.Fprintln(w, `{"error":{"code":"internal","message":"tail shard 0: consumer deleted"}}`)
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := Run(context.Background(), &Env{Stdout: &out, Stderr: &out}, []string{"tail", "--url", srv.URL})
	if err == nil || !strings.Contains(err.Error(), "consumer deleted") {
		t.Fatalf("tail ended with %v, want the stream's error", err)
	}
	if !strings.Contains(out.String(), "kv/ab v1 rpc put: put k") {
		t.Fatalf("tail printed %q", out.String())
	}
}

// TestServeRefusesBadEdgeFlags: a malformed --cors-origins or
// --allowed-hosts is a usage error before anything listens.
func TestServeRefusesBadEdgeFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--cors-origins", "app.example.com"},
		{"--cors-origins", "https://app.example.com/path"},
		{"--allowed-hosts", "http://strata.example.com"},
		{"--allowed-hosts", "strata.example.com:8080"},
	} {
		var out bytes.Buffer
		err := Run(context.Background(), &Env{Stdout: &out, Stderr: &out}, append([]string{"serve", "--data", t.TempDir(), "--http", "127.0.0.1:0"}, args...))
		var ue *usageError
		if !errors.As(err, &ue) {
			t.Errorf("serve %v: %v, want a usage error", args, err)
		}
	}
}
