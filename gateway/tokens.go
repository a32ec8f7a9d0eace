package gateway

import (
	"io"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/strata-objects/strata/log"
)

// The token routes (admin scope; auth.go):
//
//	POST   /v1/tokens       {"scopes":["call:counter","read"],"name":"…"}: the new token, shown once
//	GET    /v1/tokens       every token's record (never a secret)
//	DELETE /v1/tokens/{id}  revoke: every node refuses the token within a second or so

// tokenBodyBytesMax bounds a POST /v1/tokens body.
const tokenBodyBytesMax = 64 << 10

type tokenRequest struct {
	Name   string   `json:"name,omitempty"`
	Scopes []string `json:"scopes"`
}

// TokenView is a token's record as the routes show it.
type TokenView struct {
	ID        string     `json:"id"`
	Token     string     `json:"token,omitempty"` // only in the answer to its creation
	Name      string     `json:"name,omitempty"`
	Scopes    []string   `json:"scopes"`
	CreatedAt time.Time  `json:"created_at"`
	CreatedBy string     `json:"created_by,omitempty"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	RevokedBy string     `json:"revoked_by,omitempty"`
}

func tokenView(t log.Token) TokenView {
	v := TokenView{ID: t.ID, Name: t.Name, Scopes: t.Scopes, CreatedAt: time.Unix(0, t.CreatedAt).UTC(), CreatedBy: t.CreatedBy, RevokedBy: t.RevokedBy}
	if t.Revoked() {
		at := time.Unix(0, t.RevokedAt).UTC()
		v.RevokedAt = &at
	}
	return v
}

// tokenNameBytesMax bounds a token's name.
const tokenNameBytesMax = 256

func (g *Gateway) tokenRoutes() {
	g.handle("POST /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.Tokens == nil {
			writeError(w, r, errAuthOff)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, tokenBodyBytesMax))
		if err != nil {
			writeError(w, r, bodyError(err))
			return
		}
		var in tokenRequest
		if err := (jsonCodec{}).Decode(body, &in); err != nil {
			writeError(w, r, &routeError{http.StatusBadRequest, "bad_input", "token body: " + err.Error()})
			return
		}
		if len(in.Name) > tokenNameBytesMax || !printable(in.Name) {
			writeError(w, r, &routeError{http.StatusBadRequest, "bad_input", "token name: at most 256 bytes of printable UTF-8"})
			return
		}
		rec, secret, err := NewToken("", in.Name, in.Scopes, principal(r), time.Now())
		if err != nil {
			writeError(w, r, err)
			return
		}
		if err := g.cfg.Tokens.CreateToken(r.Context(), rec); err != nil {
			writeError(w, r, err)
			return
		}
		g.log.Info("token created", "id", rec.ID, "scopes", rec.Scopes, "by", rec.CreatedBy)
		v := tokenView(rec)
		v.Token = secret
		writeJSON(w, http.StatusCreated, v)
	})
	g.handle("GET /v1/tokens", func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.Tokens == nil {
			writeError(w, r, errAuthOff)
			return
		}
		all := g.cfg.Tokens.Tokens()
		out := make([]TokenView, len(all))
		for i, t := range all {
			out[i] = tokenView(t)
		}
		writeJSON(w, http.StatusOK, map[string]any{"tokens": out})
	})
	g.handle("DELETE /v1/tokens/{id}", func(w http.ResponseWriter, r *http.Request) {
		if g.cfg.Tokens == nil {
			writeError(w, r, errAuthOff)
			return
		}
		rec, err := g.cfg.Tokens.RevokeToken(r.Context(), r.PathValue("id"), principal(r), time.Now())
		if err != nil {
			writeError(w, r, err)
			return
		}
		g.log.Info("token revoked", "id", rec.ID, "by", principal(r))
		writeJSON(w, http.StatusOK, tokenView(rec))
	})
}

// printable: valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}
