// Package testport hands tests TCP ports that were free a moment ago, for
// servers that must know each other's ports before they start (a
// cluster's routes).
package testport

import (
	"net"
	"strings"
	"sync"
	"testing"
)

// Free returns a port on 127.0.0.1 that was free a moment ago and that it
// has not returned before in this process: the kernel may offer a port
// again once its probe listener is closed, and a cluster whose two nodes
// were given the same route port never formed.
//
// Another process may still take the port before the server binds it;
// InUse tells that failure apart so a caller can start again on fresh
// ports.
func Free(t testing.TB) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		handedOut.Lock()
		taken := handedOut.ports[port]
		handedOut.ports[port] = true
		handedOut.Unlock()
		if !taken {
			return port
		}
	}
}

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// InUse reports whether err says a listener could not bind its address
// because something else holds it. nats-server reports this as text, not
// as a wrapped syscall error.
func InUse(err error) bool {
	return err != nil && strings.Contains(err.Error(), "address already in use")
}
