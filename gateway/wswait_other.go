//go:build !unix

package gateway

import "net"

// waitReadable is a no-op where the socket cannot be peeked at: the
// reader then parks inside the WebSocket read.
func waitReadable(net.Conn) {}
