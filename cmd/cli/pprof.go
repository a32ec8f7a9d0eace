package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// validatePprofAddr accepts only loopback addresses: the profiler exposes
// heap contents and can burn CPU on request, so it is never reachable from
// another machine by accident.
func validatePprofAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return &usageError{fmt.Sprintf("--pprof %q: want host:port on a loopback address, e.g. 127.0.0.1:6060", addr)}
	}
	if !isLoopbackAddr(addr) {
		return &usageError{fmt.Sprintf("--pprof %q: the profiler listens on loopback only (127.0.0.1 or [::1])", addr)}
	}
	return nil
}

// pprofServer serves net/http/pprof on its own listener, apart from the
// gateway's mux, so profiling endpoints never appear on the public port.
type pprofServer struct {
	srv    *http.Server
	ln     net.Listener
	served chan error
}

func startPprof(addr string, logger *slog.Logger) (*pprofServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof listen %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	p := &pprofServer{
		srv:    &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		ln:     ln,
		served: make(chan error, 1),
	}
	go func() { p.served <- p.srv.Serve(ln) }()
	logger.Info("pprof serving", "addr", ln.Addr().String())
	return p, nil
}

// stop closes the listener and open profiles; a profile in progress is cut.
func (p *pprofServer) stop() error {
	err := p.srv.Close()
	if serr := <-p.served; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
