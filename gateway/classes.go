package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/strata-objects/strata/log"
	"github.com/strata-objects/strata/objects"
)

// ClassAdmin deploys and lists classes written in JavaScript (the jsclass
// package implements it). Routes:
//
//	GET  /v1/classes                   (console.go) every class, deployed ones with their versions (read)
//	GET  /v1/classes/{name}            one class's versions (read)
//	PUT  /v1/classes/{name}            deploy a new version (admin)
//	POST /v1/classes/{name}/rollback   redeploy an old version's code as a new one (admin)
//	POST /v1/classes/{name}/replay     run new code against recorded turns, writing nothing (admin)
type ClassAdmin interface {
	DeployClass(ctx context.Context, class, filename string, source []byte, export string, turnTimeout time.Duration, by string) (*log.ClassVersion, error)
	RollbackClass(ctx context.Context, class string, version uint64, by string) (*log.ClassVersion, error)
	ClassNames() []string
	ClassVersions(class string) []*log.ClassVersion
	// ReplayClass runs source against the recorded turns of the class's
	// objects and returns its report (JSON-encodable).
	ReplayClass(ctx context.Context, class, filename string, source []byte, export string, objects []string, sample int) (any, error)
}

// classVersionView is a version as the API shows it (without the code).
type classVersionView struct {
	Class         string    `json:"class"`
	Version       uint64    `json:"version"`
	Kind          string    `json:"kind"`
	Export        string    `json:"export,omitempty"`
	Source        string    `json:"source,omitempty"`
	SourceSHA256  string    `json:"source_sha256,omitempty"`
	CodeBytes     int       `json:"code_bytes"`
	CreatedAt     time.Time `json:"created_at"`
	CreatedBy     string    `json:"created_by,omitempty"`
	RollbackOf    uint64    `json:"rollback_of,omitempty"`
	TurnTimeoutMs int64     `json:"turn_timeout_ms,omitempty"`
}

func viewClassVersion(cv *log.ClassVersion) classVersionView {
	return classVersionView{
		Class: cv.Class, Version: cv.Version, Kind: cv.Kind, Export: cv.Export, Source: cv.Source,
		SourceSHA256: fmt.Sprintf("%x", cv.SourceHash), CodeBytes: len(cv.Code),
		CreatedAt: time.Unix(0, cv.CreatedAt).UTC(), CreatedBy: cv.CreatedBy, RollbackOf: cv.RollbackOf,
		TurnTimeoutMs: cv.TurnTimeoutMs,
	}
}

// deployRequest is the body of PUT /v1/classes/{name}.
type deployRequest struct {
	Source      string `json:"source"`
	Filename    string `json:"filename"`
	Export      string `json:"export"`
	TurnTimeout string `json:"turn_timeout"` // a Go duration, "" for the node's default
	// Replay only:
	Objects []string `json:"objects"`
	Sample  int      `json:"sample"`
}

// classBodyBytesMax bounds a deploy's body (the source, JSON-escaped).
const classBodyBytesMax = 8 << 20

func (g *Gateway) classRoutes() {
	ca := g.cfg.Classes
	readDeploy := func(w http.ResponseWriter, r *http.Request) (deployRequest, bool) {
		var in deployRequest
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, classBodyBytesMax))
		if err != nil {
			writeError(w, r, bodyError(err))
			return in, false
		}
		if err := (jsonCodec{}).Decode(body, &in); err != nil {
			writeError(w, r, &routeError{http.StatusBadRequest, "bad_input", "class body: " + err.Error()})
			return in, false
		}
		if in.Filename == "" {
			in.Filename = r.PathValue("name") + ".js"
		}
		if len(in.Filename) > 256 || !printable(in.Filename) || len(in.Export) > 256 || !printable(in.Export) {
			writeError(w, r, &routeError{http.StatusBadRequest, "bad_input", "filename and export: at most 256 bytes of printable UTF-8"})
			return in, false
		}
		return in, true
	}
	g.handle("GET /v1/classes/{name}", func(w http.ResponseWriter, r *http.Request) {
		if err := objects.ValidateClassName(r.PathValue("name")); err != nil {
			writeError(w, r, err)
			return
		}
		vs := ca.ClassVersions(r.PathValue("name"))
		if len(vs) == 0 {
			writeError(w, r, fmt.Errorf("%w: %s", log.ErrNoClassVersion, r.PathValue("name")))
			return
		}
		out := make([]classVersionView, len(vs))
		for i, v := range vs {
			out[i] = viewClassVersion(v)
		}
		writeJSON(w, http.StatusOK, map[string]any{"class": r.PathValue("name"), "versions": out})
	})
	g.handle("PUT /v1/classes/{name}", func(w http.ResponseWriter, r *http.Request) {
		in, ok := readDeploy(w, r)
		if !ok {
			return
		}
		var timeout time.Duration
		if in.TurnTimeout != "" {
			d, err := time.ParseDuration(in.TurnTimeout)
			if err != nil || d <= 0 || d > time.Hour {
				writeError(w, r, &routeError{http.StatusBadRequest, "bad_input", "turn_timeout: a duration in (0, 1h]"})
				return
			}
			timeout = d
		}
		cv, err := ca.DeployClass(r.Context(), r.PathValue("name"), in.Filename, []byte(in.Source), in.Export, timeout, principal(r))
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, viewClassVersion(cv))
	})
	g.handle("POST /v1/classes/{name}/rollback", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Version uint64 `json:"version"`
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 4<<10))
		if err != nil {
			writeError(w, r, bodyError(err))
			return
		}
		if err := json.Unmarshal(body, &in); err != nil || in.Version == 0 {
			writeError(w, r, &routeError{http.StatusBadRequest, "bad_input", `rollback body: want {"version": N}, N ≥ 1`})
			return
		}
		if err := objects.ValidateClassName(r.PathValue("name")); err != nil {
			writeError(w, r, err)
			return
		}
		cv, err := ca.RollbackClass(r.Context(), r.PathValue("name"), in.Version, principal(r))
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusCreated, viewClassVersion(cv))
	})
	g.handle("POST /v1/classes/{name}/replay", func(w http.ResponseWriter, r *http.Request) {
		in, ok := readDeploy(w, r)
		if !ok {
			return
		}
		if in.Sample < 0 || in.Sample > 10000 || len(in.Objects) > 1000 {
			writeError(w, r, &routeError{http.StatusBadRequest, "bad_input", "sample: 0..10000; objects: at most 1000"})
			return
		}
		rep, err := ca.ReplayClass(r.Context(), r.PathValue("name"), in.Filename, []byte(in.Source), in.Export, in.Objects, in.Sample)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, rep)
	})
}
