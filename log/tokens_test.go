package log

import (
	"context"
	"errors"
	"testing"
	"time"
)

// Two views of one bucket (two nodes): a token created by one is known to
// the other, a second create of the same id loses, and a revocation by one
// reaches the other through the watch.
func TestTokensCreateRevokeWatched(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	a, err := openLog(t, srv, Config{}).OpenTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := openLog(t, srv, Config{}).OpenTokens(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	tok := Token{ID: "t1", Hash: []byte("h"), Scopes: []string{"read"}, CreatedAt: 1, CreatedBy: "admin"}
	if err := a.CreateToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := b.CreateToken(ctx, tok); !errors.Is(err, ErrTokenExists) {
		t.Fatalf("second create: %v, want ErrTokenExists", err)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got, ok := b.Token("t1"); !ok || got.CreatedBy != "admin" {
			return errors.New("b does not know t1 yet")
		}
		return nil
	})
	at := time.Unix(100, 0)
	r, err := b.RevokeToken(ctx, "t1", "root", at)
	if err != nil || r.RevokedAt != at.UnixNano() || r.RevokedBy != "root" {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got, _ := a.Token("t1"); !got.Revoked() {
			return errors.New("a does not see the revocation yet")
		}
		return nil
	})
	// A second revocation keeps the first.
	if r2, err := a.RevokeToken(ctx, "t1", "other", time.Unix(200, 0)); err != nil || r2.RevokedBy != "root" {
		t.Fatalf("second revoke: %+v %v", r2, err)
	}
	if _, err := a.RevokeToken(ctx, "nope", "root", at); !errors.Is(err, ErrNoToken) {
		t.Fatalf("revoke of an unknown id: %v", err)
	}
	if got := a.Tokens(); len(got) != 1 || got[0].ID != "t1" {
		t.Fatalf("list: %+v", got)
	}
	if err := a.CreateToken(ctx, Token{ID: "Bad.Id", Hash: []byte("h")}); err == nil {
		t.Fatal("a bad id was stored")
	}
}
