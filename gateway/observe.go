package gateway

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"
)

// Observer learns of every answered request (metrics): the class and RPC
// method as the client named them ("" where the route has none), the
// route's action (rpc, fetch, ws, history, …, or the route's own name for
// the routes outside /v1/objects), the status and the time taken. The
// observer bounds the label values; the gateway passes them as they came.
type Observer func(class, action, method string, code int, took time.Duration)

// observe answers r through next and reports it to obs and end (either
// may be nil).
func observe(obs Observer, end func(code int), next http.Handler, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		code := sw.code
		if code == 0 {
			code = http.StatusOK
		}
		if end != nil {
			end(code)
		}
		if obs != nil {
			class, action, method := requestLabels(r)
			obs(class, action, method, code, time.Since(start))
		}
	}()
	next.ServeHTTP(sw, r)
}

// requestLabels names what r asked for, from its path alone.
func requestLabels(r *http.Request) (class, action, method string) {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/v1/objects/"):
		op, err := splitObjectPath(r)
		if err != nil {
			return "", "bad_path", ""
		}
		if op.action == "" {
			return op.class, "list", ""
		}
		if op.action == "rpc" {
			method = op.rest
		}
		return op.class, op.action, method
	case p == "/healthz", p == "/metrics", p == "/v1/tail", p == "/v1/cluster", p == "/v1/classes", p == "/v1/node":
		return "", strings.TrimPrefix(strings.TrimPrefix(p, "/v1"), "/"), ""
	case strings.HasPrefix(p, "/v1/alarms"):
		return "", "alarms", ""
	case strings.HasPrefix(p, "/v1/tokens"):
		return "", "tokens", ""
	case p == "/", strings.HasPrefix(p, "/console"), strings.HasPrefix(p, "/ui/"):
		return "", "ui", ""
	}
	return "", "other", ""
}

// statusWriter keeps the status a handler answered, and passes Flush and
// Hijack through (tails stream; WebSockets take the connection).
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := s.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("gateway: response does not implement http.Hijacker")
	}
	if s.code == 0 {
		s.code = http.StatusSwitchingProtocols
	}
	return hj.Hijack()
}

// Unwrap lets http.ResponseController reach the connection (deadlines).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
