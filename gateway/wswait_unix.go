//go:build unix

package gateway

import (
	"errors"
	"net"
	"syscall"
)

// waitReadable blocks until conn has bytes to read (or an error or its read
// deadline), without reading them, from a shallow stack: an idle socket's
// goroutine then parks with a small stack instead of deep inside the
// WebSocket reader. Any failure returns at once: the real read reports it.
func waitReadable(conn net.Conn) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return
	}
	var b [1]byte
	raw.Read(func(fd uintptr) bool {
		_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return !errors.Is(err, syscall.EAGAIN)
	})
}
