package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/gorilla/websocket"
)

// The guard keeps other web sites out, with or without tokens (a browser
// sends its cookies and reaches loopback; a token may sit in a page):
//
//   - Host: a request must name this gateway. Loopback names (localhost,
//     127.0.0.0/8, [::1]) always do; other hosts only when the operator
//     lists them (Config.AllowedHosts). This stops DNS rebinding, where an
//     attacker's name is made to resolve to 127.0.0.1 and the page reads
//     what the node answers.
//   - Origin: a browser request from another origin is refused unless its
//     origin is listed (Config.CORSOrigins), and so is an unsafe request a
//     browser marks cross-site without an Origin. Requests without Origin
//     and without Sec-Fetch-Site are not from a browser and pass.
//   - CORS: a preflight (OPTIONS with Access-Control-Request-Method) is
//     answered for listed origins only; their actual requests get the CORS
//     headers; nobody else gets any, so a browser shows no other page what
//     the gateway answered.
//
// Refusals are 403 with code forbidden_host or forbidden_origin, answered
// before any handler runs: nothing is read, nothing is written.

// guardConfig is the guard's view of Config, normalised once.
type guardConfig struct {
	hosts     []string // lower case: names, "*.suffix", IP literals
	anyIP     bool     // an unspecified address was listed: any IP literal Host
	anyHost   bool     // "*": the Host check is off
	origins   []string // lower case scheme://host[:port]
	wsOrigins []string // WebSocketConfig.AllowedOrigins: host[:port] or "*"
}

func newGuardConfig(cfg Config) (guardConfig, error) {
	var gc guardConfig
	for _, h := range cfg.AllowedHosts {
		h = strings.ToLower(strings.TrimSpace(h))
		switch {
		case h == "":
			continue
		case h == "*":
			gc.anyHost = true
			continue
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if a, err := netip.ParseAddr(h); err == nil && a.IsUnspecified() {
			gc.anyIP = true
			continue
		}
		if strings.ContainsAny(h, "/:@ ") && !isIP(h) {
			return guardConfig{}, fmt.Errorf("gateway: allowed host %q: want a host name, *.domain or an IP address, without scheme or port", h)
		}
		gc.hosts = append(gc.hosts, h)
	}
	for _, o := range cfg.CORSOrigins {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return guardConfig{}, fmt.Errorf("gateway: CORS origin %q: want scheme://host[:port], such as https://app.example.com", o)
		}
		gc.origins = append(gc.origins, strings.ToLower(u.Scheme+"://"+u.Host))
	}
	gc.wsOrigins = cfg.WebSocket.AllowedOrigins
	return gc, nil
}

// CheckEdge reports what New would refuse in Config.AllowedHosts and
// Config.CORSOrigins, so that a command can refuse its flags before it
// starts anything.
func CheckEdge(allowedHosts, corsOrigins []string) error {
	_, err := newGuardConfig(Config{AllowedHosts: allowedHosts, CORSOrigins: corsOrigins})
	return err
}

func isIP(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}

// hostAllowed reports whether the request's Host names this gateway.
func (gc *guardConfig) hostAllowed(hostport string) bool {
	if gc.anyHost {
		return true
	}
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	host = strings.TrimSuffix(host, ".") // "localhost." is localhost
	if host == "localhost" {
		return true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Unmap().IsLoopback() || gc.anyIP {
			return true
		}
		return slices.ContainsFunc(gc.hosts, func(h string) bool {
			b, err := netip.ParseAddr(h)
			return err == nil && b.Unmap() == a.Unmap()
		})
	}
	for _, h := range gc.hosts {
		if h == host || (strings.HasPrefix(h, "*.") && strings.HasSuffix(host, h[1:])) {
			return true
		}
	}
	return false
}

// originVerdict classifies a request's Origin.
type originVerdict int

const (
	noOrigin   originVerdict = iota // not a browser's cross-origin request
	sameOrigin                      // the gateway's own page
	listed                          // a listed CORS origin
	foreign
)

func (gc *guardConfig) origin(r *http.Request) originVerdict {
	origin := r.Header.Get("Origin")
	if origin == "" {
		// A browser always sends Origin on a cross-site unsafe request;
		// Sec-Fetch-Site is the second opinion, for one that did not.
		if r.Header.Get("Sec-Fetch-Site") == "cross-site" && !safeMethod(r.Method) {
			return foreign
		}
		return noOrigin
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return foreign // includes "null": sandboxed frames, files
	}
	if strings.EqualFold(u.Host, r.Host) {
		return sameOrigin
	}
	if slices.Contains(gc.origins, strings.ToLower(u.Scheme+"://"+u.Host)) {
		return listed
	}
	if websocket.IsWebSocketUpgrade(r) && slices.ContainsFunc(gc.wsOrigins, func(a string) bool { return a == "*" || strings.EqualFold(a, u.Host) }) {
		return listed
	}
	return foreign
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// corsAllowHeaders are the request headers a listed origin may send.
const corsAllowHeaders = "Authorization, Content-Type, X-Request-Id, Idempotency-Key"

// guard wraps next with the Host, Origin and CORS checks.
func (gc *guardConfig) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !gc.hostAllowed(r.Host) {
			writeError(w, r, &routeError{http.StatusForbidden, "forbidden_host", fmt.Sprintf("host %q is not this gateway's: only loopback names and the hosts in --allowed-hosts are served", truncateReason(r.Host))})
			return
		}
		v := gc.origin(r)
		if v == foreign {
			writeError(w, r, &routeError{http.StatusForbidden, "forbidden_origin", fmt.Sprintf("origin %q may not call this gateway: only its own pages and the origins in --cors-origins may", truncateReason(r.Header.Get("Origin")))})
			return
		}
		if v == listed {
			h := w.Header()
			h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
			h.Add("Vary", "Origin")
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
				h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
				h.Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
			h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After, Strata-Node")
		}
		next.ServeHTTP(w, r)
	})
}
