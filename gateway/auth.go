package gateway

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// Credentials and scopes (DESIGN.md, "Security model"; docs/security.md).
//
// With Config.Tokens set, every request but the open ones (/healthz, the
// chat page) needs a bearer token, checked by one wrapper (authorize)
// before any handler runs, so a refused request changes nothing:
//
//   - no token, or one that is unknown, wrong or revoked: 401 unauthorized
//     with WWW-Authenticate;
//   - a token whose scopes do not cover the route: 403 forbidden.
//
// A token is "strata_<id>_<secret>": the id is public and short, and is
// the principal that every event's cause records; the secret is 256 random
// bits in hex, of which the store keeps only the SHA-256 (a fast hash is
// enough for secrets this long), compared in constant time.
//
// Scopes: "call" or "call:<class pattern>" (RPC, fetch, WebSocket and the
// object's alarm routes of the classes the pattern matches, '*' a
// wildcard), "read" (history, state, audit, listing, tail) and "admin"
// (restore, the alarm operator routes, the cluster view, tokens; admin
// implies the others).
//
// routeAccess is the one table from route to what it needs; every route is
// registered through handle, which refuses a pattern the table lacks.

// TokenStore is the replicated store of token records (log.Tokens).
type TokenStore interface {
	Token(id string) (log.Token, bool)
	Tokens() []log.Token
	CreateToken(ctx context.Context, t log.Token) error
	RevokeToken(ctx context.Context, id, by string, at time.Time) (log.Token, error)
}

// access is what a route needs.
type access uint8

const (
	accessOpen     access = iota + 1 // anyone
	accessToken                      // any valid token (routes that match nothing)
	accessCall                       // call, for the object's class
	accessRead                       // read
	accessAdmin                      // admin
	accessByAction                   // the object route: actionAccess by its action
)

// Scopes, as stored in a token record.
const (
	ScopeCall  = "call"
	ScopeRead  = "read"
	ScopeAdmin = "admin"
)

func (a access) scope() string {
	switch a {
	case accessCall:
		return ScopeCall
	case accessRead:
		return ScopeRead
	case accessAdmin:
		return ScopeAdmin
	}
	return ""
}

// routeAccess maps each mux pattern to what it needs.
var routeAccess = map[string]access{
	"GET /healthz":                  accessOpen,
	"GET /ui/chat":                  accessOpen,
	"/":                             accessToken,
	"/v1/objects/{class}/{rest...}": accessByAction,
	"GET /v1/objects/{class}":       accessRead,
	"GET /v1/tail":                  accessRead,
	"GET /v1/cluster":               accessAdmin,
	"GET /v1/cluster/raft":          accessAdmin,
	"GET /v1/alarms":                accessAdmin,
	"GET /v1/alarms/dead":           accessAdmin,
	"POST /v1/alarms/dead/retry":    accessAdmin,
	"GET /v1/outbox/dead":           accessAdmin,
	"POST /v1/outbox/dead/retry":    accessAdmin,
	"GET /v1/tokens":                accessAdmin,
	"POST /v1/tokens":               accessAdmin,
	"DELETE /v1/tokens/{id}":        accessAdmin,
	// Deployed classes (classes.go).
	"GET /v1/classes":                  accessRead,
	"GET /v1/classes/{name}":           accessRead,
	"PUT /v1/classes/{name}":           accessAdmin,
	"POST /v1/classes/{name}/rollback": accessAdmin,
	"POST /v1/classes/{name}/replay":   accessAdmin,
	"GET /{$}":                         accessOpen, // a redirect to the console
	"GET /console":                     accessOpen,
	"GET /console/":                    accessOpen, // static files; the API calls they make need tokens
	"GET /metrics":                     accessRead,
	"GET /v1/node":                     accessRead,
}

// actionAccess maps each action of the object route (isAction) to what it
// needs.
var actionAccess = map[string]access{
	"rpc":     accessCall,
	"fetch":   accessCall,
	"alarm":   accessCall,
	"outbox":  accessRead, // GET …/outbox: the object's pending messages and dead letters
	"ws":      accessCall,
	"history": accessRead,
	"state":   accessRead,
	"audit":   accessRead,
	"restore": accessAdmin,
	"sql":     accessRead, // POST …/sql/query: read-only, against the past
	"trace":   accessRead, // GET …/trace?version=N: the causal trace (history/trace.go)
	"live":    accessRead, // GET …/live: activation and WebSockets on this node (console.go)
}

// handle registers a route; a pattern without a row in routeAccess is a
// programming error that New reports.
func (g *Gateway) handle(pattern string, h http.HandlerFunc) {
	if _, ok := routeAccess[pattern]; !ok {
		g.routeErrs = append(g.routeErrs, fmt.Errorf("gateway: route %q has no row in routeAccess", pattern))
	}
	g.patterns = append(g.patterns, pattern)
	g.mux.HandleFunc(pattern, h)
}

// need says what r needs, and for the object route, the object's class
// and the action.
func (g *Gateway) need(r *http.Request) (a access, class, action string) {
	_, pattern := g.mux.Handler(r)
	a, ok := routeAccess[pattern]
	if !ok {
		return accessToken, "", "" // a redirect or a 405: nothing is served
	}
	if a != accessByAction {
		return a, "", ""
	}
	p, err := splitObjectPath(r)
	if err != nil {
		return accessToken, "", ""
	}
	if a, ok := actionAccess[p.action]; ok {
		return a, p.class, p.action
	}
	return accessToken, "", "" // the handler answers 404
}

type principalKey struct{}

// principal is the id of the token r was let in with ("" with auth off).
func principal(r *http.Request) string {
	p, _ := r.Context().Value(principalKey{}).(string)
	return p
}

// Token sources other than the Authorization header, for browsers'
// WebSockets, which cannot set headers.
const (
	wsTokenProtocolPrefix = "strata.token."
	wsProtocol            = "strata" // offered beside the token, it is the one answered
	tokenQueryParam       = "access_token"
	tokenPrefix           = "strata_"
	tokenSecretBytes      = 32
)

// authorize lets r through (returning it with its principal) or answers
// 401 or 403 and returns false.
func (g *Gateway) authorize(w http.ResponseWriter, r *http.Request) (*http.Request, bool) {
	need, class, action := g.need(r)
	if need == accessOpen {
		return r, true
	}
	raw, fromProtocol := bearer(r, action == "ws")
	if raw == "" {
		unauthorized(w, r, "", "a bearer token is required: Authorization: Bearer TOKEN")
		return r, false
	}
	tok, ok := g.checkToken(raw)
	if !ok {
		unauthorized(w, r, "invalid_token", "the token is unknown, wrong or revoked")
		return r, false
	}
	if !allows(tok.Scopes, need, class) {
		want := need.scope()
		if need == accessCall {
			want += ":" + class
		}
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="strata", error="insufficient_scope", scope=%q`, want))
		writeError(w, r, &routeError{http.StatusForbidden, "forbidden", fmt.Sprintf("token %s lacks scope %q for %s %s", tok.ID, want, r.Method, r.URL.Path)})
		return r, false
	}
	// The credential goes no further: not to the object's handlers, not
	// to the owner node.
	r.Header.Del("Authorization")
	if fromProtocol != "" {
		var keep []string
		for _, h := range r.Header.Values("Sec-Websocket-Protocol") {
			for _, p := range strings.Split(h, ",") {
				if p = strings.TrimSpace(p); !strings.HasPrefix(p, wsTokenProtocolPrefix) {
					keep = append(keep, p)
				}
			}
		}
		r.Header.Del("Sec-Websocket-Protocol")
		if len(keep) > 0 {
			r.Header.Set("Sec-Websocket-Protocol", strings.Join(keep, ", "))
		}
	}
	if action == "ws" && strings.Contains(r.URL.RawQuery, tokenQueryParam) {
		q := r.URL.Query()
		q.Del(tokenQueryParam)
		r.URL.RawQuery = q.Encode()
	}
	ctx := context.WithValue(r.Context(), principalKey{}, tok.ID)
	if fromProtocol != "" {
		ctx = context.WithValue(ctx, wsProtocolKey{}, fromProtocol)
	}
	return r.WithContext(ctx), true
}

func unauthorized(w http.ResponseWriter, r *http.Request, code, msg string) {
	h := `Bearer realm="strata"`
	if code != "" {
		h += `, error="` + code + `"`
	}
	w.Header().Set("WWW-Authenticate", h)
	writeError(w, r, &routeError{http.StatusUnauthorized, "unauthorized", msg})
}

// bearer finds r's token: the Authorization header, or for a WebSocket
// upgrade a subprotocol strata.token.<token> or ?access_token=. It also
// returns the subprotocol the token came in, which the upgrade answers.
func bearer(r *http.Request, ws bool) (token, protocol string) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(tok), ""
		}
		return "", ""
	}
	if !ws {
		return "", ""
	}
	for _, h := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			p = strings.TrimSpace(p)
			if tok, ok := strings.CutPrefix(p, wsTokenProtocolPrefix); ok {
				return tok, p
			}
		}
	}
	return r.URL.Query().Get(tokenQueryParam), ""
}

type wsProtocolKey struct{}

// wsAnswerProtocol is the subprotocol a WebSocket upgrade answers with
// when its token came as one (a browser fails a handshake that offers
// subprotocols and gets none back): "strata" if offered too, else the
// token's own.
func wsAnswerProtocol(r *http.Request) string {
	p, _ := r.Context().Value(wsProtocolKey{}).(string)
	if p == "" {
		return ""
	}
	for _, h := range r.Header.Values("Sec-Websocket-Protocol") {
		for _, o := range strings.Split(h, ",") {
			if strings.TrimSpace(o) == wsProtocol {
				return wsProtocol
			}
		}
	}
	return p
}

// tokenRevoked returns, with auth on, a check of whether the token id
// still stands (for what outlives its request: a WebSocket, a tail); nil
// with auth off or for a request let in without a token.
func (g *Gateway) tokenRevoked(id string) func() bool {
	if g.cfg.Tokens == nil || id == "" {
		return nil
	}
	return func() bool {
		tok, ok := g.cfg.Tokens.Token(id)
		return !ok || tok.Revoked()
	}
}

// checkToken finds raw's record and checks its secret and that it is in
// force.
func (g *Gateway) checkToken(raw string) (log.Token, bool) {
	id, secret, ok := splitToken(raw)
	if !ok {
		return log.Token{}, false
	}
	tok, ok := g.cfg.Tokens.Token(id)
	if !ok || tok.Revoked() {
		return log.Token{}, false
	}
	sum := sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(sum[:], tok.Hash) != 1 {
		return log.Token{}, false
	}
	return tok, true
}

// splitToken parses strata_<id>_<hex secret>.
func splitToken(raw string) (id string, secret []byte, ok bool) {
	rest, ok := strings.CutPrefix(raw, tokenPrefix)
	if !ok {
		return "", nil, false
	}
	i := strings.LastIndexByte(rest, '_')
	if i <= 0 {
		return "", nil, false
	}
	id = rest[:i]
	secret, err := hex.DecodeString(rest[i+1:])
	if err != nil || len(secret) != tokenSecretBytes || log.ValidTokenID(id) != nil {
		return "", nil, false
	}
	return id, secret, true
}

// allows says whether scopes grant need (for class, with call).
func allows(scopes []string, need access, class string) bool {
	if need == accessToken {
		return true
	}
	for _, s := range scopes {
		switch {
		case s == ScopeAdmin:
			return true
		case s == ScopeRead && need == accessRead:
			return true
		case s == ScopeCall && need == accessCall:
			return true
		case need == accessCall && strings.HasPrefix(s, ScopeCall+":"):
			if ok, _ := path.Match(strings.TrimPrefix(s, ScopeCall+":"), class); ok {
				return true
			}
		}
	}
	return false
}

// ValidateScopes checks scopes as a token is created: each is admin, read,
// call or call:<pattern> where the pattern is class-name characters and
// '*'.
func ValidateScopes(scopes []string) error {
	if len(scopes) == 0 {
		return fmt.Errorf("%w: a token needs at least one scope: admin, read, call or call:<class pattern>", objects.ErrBadInput)
	}
	for _, s := range scopes {
		if s == ScopeAdmin || s == ScopeRead || s == ScopeCall {
			continue
		}
		pat, ok := strings.CutPrefix(s, ScopeCall+":")
		if !ok || pat == "" || len(pat) > 64 || strings.Trim(pat, "abcdefghijklmnopqrstuvwxyz0123456789-*") != "" {
			return fmt.Errorf("%w: scope %q: want admin, read, call or call:<class pattern> (a-z, 0-9, '-', '*')", objects.ErrBadInput, s)
		}
	}
	return nil
}

// NewToken makes a token: its record (to store) and the secret string
// (to show once). An empty id takes a random one.
func NewToken(id, name string, scopes []string, by string, at time.Time) (log.Token, string, error) {
	if err := ValidateScopes(scopes); err != nil {
		return log.Token{}, "", err
	}
	if id == "" {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return log.Token{}, "", fmt.Errorf("gateway: token id: %w", err)
		}
		id = hex.EncodeToString(b[:])
	}
	if err := log.ValidTokenID(id); err != nil {
		return log.Token{}, "", fmt.Errorf("%w: %w", objects.ErrBadInput, err)
	}
	secret := make([]byte, tokenSecretBytes)
	if _, err := rand.Read(secret); err != nil {
		return log.Token{}, "", fmt.Errorf("gateway: token secret: %w", err)
	}
	sum := sha256.Sum256(secret)
	rec := log.Token{ID: id, Hash: sum[:], Name: name, Scopes: scopes, CreatedAt: at.UnixNano(), CreatedBy: by}
	return rec, tokenPrefix + id + "_" + hex.EncodeToString(secret), nil
}

var errAuthOff = errors.New("gateway: auth is off on this node, so it keeps no tokens")

// authorizeThen runs next for the requests a token allows: all of them
// with auth off. It runs after the guard, so a CORS preflight (which
// carries no token) is answered before it, and a foreign Host or Origin
// is refused before a token is looked at.
func (g *Gateway) authorizeThen(next http.Handler) http.Handler {
	if g.cfg.Tokens == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r, ok := g.authorize(w, r)
		if !ok {
			return
		}
		next.ServeHTTP(w, r)
	})
}
