package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// benchConn is one load worker's HTTP/1.1 keep-alive connection. It writes
// each request by hand and reads the response with http.ReadResponse:
// no goroutines and no channels per request, unlike http.Transport, so
// on a small machine the load generator leaves the CPU to the server it
// measures, as wrk does. It speaks plain http:// only; a broken
// connection is dialled again on the next request.
type benchConn struct {
	host string // host:port to dial
	hdr  string // the Host header, and Authorization if there is a token
	conn net.Conn
	br   *bufio.Reader
	buf  []byte
}

func newBenchConn(base, token string) (*benchConn, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("bench: load needs an http:// gateway URL, got %q", base)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "80")
	}
	hdr := u.Host
	if token != "" {
		hdr += "\r\nAuthorization: Bearer " + token
	}
	return &benchConn{host: host, hdr: hdr}, nil
}

// post sends one POST and returns the status and body. The deadline
// covers the whole exchange.
func (c *benchConn) post(ctx context.Context, path, body string) (int, []byte, error) {
	if c.conn == nil {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", c.host)
		if err != nil {
			return 0, nil, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	c.conn.SetDeadline(time.Now().Add(30 * time.Second))
	b := c.buf[:0]
	b = append(b, "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.hdr...)
	b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.buf = b
	if _, err := c.conn.Write(b); err != nil {
		c.close()
		return 0, nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return 0, nil, err
	}
	data, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.close()
		return 0, nil, err
	}
	if resp.Close {
		c.close()
	}
	return resp.StatusCode, bytes.TrimSpace(data), nil
}

func (c *benchConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}
