package gateway

import (
	"context"
	"embed"
	"io/fs"
	"net/http"

	"github.com/strata-objects/strata/objects"
)

// The console (/console/) is a static page on the node's own origin: plain
// HTML, CSS and JavaScript modules embedded in the binary, no build step.
// It holds no data of its own: it calls the same HTTP API as every client,
// with a token the user enters (kept in sessionStorage, never in a URL), so
// the guard and the scopes apply to it as to any client. Its responses
// carry a strict Content-Security-Policy: its own scripts and styles only,
// no inline code, no framing, connections to its own origin only.
//
//	GET  /                 redirects to /console/
//	GET  /console/{file}   the console's files (open: they hold no data)
//	GET  /metrics          Prometheus text format (scope read)
//	GET  /v1/classes       classes, their methods, objects and live activations (scope read)
//	GET  /v1/node          this node's numbers: activations, sockets, alarms, projector (scope read)

//go:embed console
var consoleFiles embed.FS

// consoleCSP is the console's Content-Security-Policy.
const consoleCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Inspector is what the console's read routes need of this node.
type Inspector interface {
	ClassNames() []string
	Class(name string) (*objects.Class, error)
	LiveOf() map[string]int
}

// classCountMax bounds the objects counted per class for /v1/classes: a
// larger class shows as "at least" this many.
const classCountMax = 10000

func (g *Gateway) consoleRoutes() {
	sub, err := fs.Sub(consoleFiles, "console")
	if err != nil {
		g.routeErrs = append(g.routeErrs, err)
		return
	}
	files := http.StripPrefix("/console/", http.FileServerFS(sub))
	g.handle("GET /console/", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", consoleCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	g.handle("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusFound)
	})
	g.handle("GET /console", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/", http.StatusMovedPermanently)
	})
	if g.cfg.Metrics != nil {
		g.handle("GET /metrics", g.cfg.Metrics.ServeHTTP)
	}
	g.handle("GET /v1/classes", g.classes)
	g.handle("GET /v1/node", func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.NodeStats == nil {
			writeError(w, r, &routeError{http.StatusNotFound, "not_found", "this gateway has no node statistics"})
			return
		}
		writeJSON(w, http.StatusOK, g.cfg.NodeStats())
	})
}

// classInfo is one row of GET /v1/classes: a class built into the binary
// (kind "go") or deployed at run time (kind "javascript", with its
// versions).
type classInfo struct {
	Name    string   `json:"name"`
	Kind    string   `json:"kind"`
	Methods []string `json:"methods"`
	// Objects counts the class's objects in this node's snapshot, up to
	// classCountMax; ObjectsMore says there are more.
	Objects     int  `json:"objects"`
	ObjectsMore bool `json:"objects_more,omitempty"`
	Live        int  `json:"live"` // activations of the class live on this node
	// A deployed class's newest version, its number of versions, and the
	// newest's record (without the code).
	Version  uint64            `json:"version,omitempty"`
	Versions int               `json:"versions,omitempty"`
	Latest   *classVersionView `json:"latest,omitempty"`
}

// classes answers GET /v1/classes: the built-in classes (Inspect) and the
// deployed ones (Classes), each with its object count.
func (g *Gateway) classes(w http.ResponseWriter, r *http.Request) {
	in, ca := g.cfg.Inspect, g.cfg.Classes
	if in == nil && ca == nil {
		writeError(w, r, &routeError{http.StatusNotFound, "not_found", "this gateway cannot list classes"})
		return
	}
	var live map[string]int
	var rows []classInfo
	seen := map[string]bool{}
	if in != nil {
		live = in.LiveOf()
		for _, name := range in.ClassNames() {
			c, err := in.Class(name)
			if err != nil {
				continue
			}
			seen[name] = true
			rows = append(rows, classInfo{Name: name, Kind: "go", Methods: c.Methods(), Live: live[name]})
		}
	}
	if ca != nil {
		for _, name := range ca.ClassNames() {
			vs := ca.ClassVersions(name)
			if len(vs) == 0 || seen[name] {
				continue
			}
			latest := viewClassVersion(vs[len(vs)-1])
			rows = append(rows, classInfo{Name: name, Kind: "javascript", Methods: []string{}, Live: live[name],
				Version: latest.Version, Versions: len(vs), Latest: &latest})
		}
	}
	h, _ := g.cfg.Backend.(Historian)
	out := []classInfo{}
	for _, ci := range rows {
		if h != nil {
			cursor := ""
			for ci.Objects < classCountMax {
				page, next, err := h.ListObjects(ci.Name, "", cursor, min(1000, classCountMax-ci.Objects))
				if err != nil {
					writeError(w, r, err)
					return
				}
				ci.Objects += len(page)
				if next == "" {
					break
				}
				cursor = next
			}
			if ci.Objects >= classCountMax {
				_, next, err := h.ListObjects(ci.Name, "", cursor, 1)
				ci.ObjectsMore = err == nil && next != ""
			}
		}
		out = append(out, ci)
	}
	writeJSON(w, http.StatusOK, map[string]any{"classes": out})
}

// WebSocketsOpen is how many WebSockets this gateway holds open.
func (g *Gateway) WebSocketsOpen() int {
	g.ws.mu.Lock()
	defer g.ws.mu.Unlock()
	return len(g.ws.mu.conns)
}

// livenessReader is a backend that tells objects' lives: the runtime
// (this node's) and the cluster's router (each object's owner's).
type livenessReader interface {
	Liveness(ctx context.Context, class string, ids []objects.ID) []objects.Liveness
}

// placer is a backend that places objects on nodes (the cluster router).
type placer interface {
	Owns(objects.ID) bool
	OwnerOf(objects.ID) string
}

// liveness is what the console shows of an object's life: whether it has
// a live activation and how many WebSockets it holds open, as the node
// that runs it says (in a cluster, its owner in this node's view: Owner,
// and Elsewhere when that is another node). Unknown: the owner did not
// answer in time, and Active and WebSockets say nothing.
type liveness struct {
	Active     bool   `json:"active"`
	WebSockets *int   `json:"websockets,omitempty"`
	Owner      string `json:"owner,omitempty"`
	Elsewhere  bool   `json:"elsewhere,omitempty"`
	Unknown    bool   `json:"unknown,omitempty"`
}

// livenessOf is liveness for objects of one class, asked in one go (a
// cluster asks each owner node once); sockets adds the WebSocket counts.
func (g *Gateway) livenessOf(ctx context.Context, class string, ids []objects.ID, sockets bool) []liveness {
	out := make([]liveness, len(ids))
	var live []objects.Liveness
	if lr, ok := g.cfg.Backend.(livenessReader); ok {
		live = lr.Liveness(ctx, class, ids)
	}
	p, placed := g.cfg.Backend.(placer)
	for i, id := range ids {
		l := &out[i]
		if i < len(live) {
			l.Active, l.Unknown = live[i].Active, live[i].Unknown
			if sockets && !l.Unknown {
				n := live[i].Sockets
				l.WebSockets = &n
			}
		} else {
			l.Unknown = true
		}
		if placed {
			l.Owner, l.Elsewhere = p.OwnerOf(id), !p.Owns(id)
		}
	}
	return out
}

// live answers GET /v1/objects/{class}/{name}/live: the object's liveness
// with its WebSocket count (scope read).
func (g *Gateway) live(w http.ResponseWriter, r *http.Request, rt route) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, r, &routeError{http.StatusMethodNotAllowed, "method_not_allowed", "live takes GET"})
		return
	}
	if rt.rest != "" {
		writeError(w, r, &routeError{http.StatusNotFound, "not_found", "nothing is under …/live"})
		return
	}
	writeJSON(w, http.StatusOK, g.livenessOf(r.Context(), rt.ref.Class, []objects.ID{rt.ref.ID}, true)[0])
}
