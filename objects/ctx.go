package objects

import (
	"context"
	"net/http"

	"github.com/strata-objects/strata/log"
)

// Cause records why a turn ran; it is stored with the turn's writes.
type Cause = log.Cause

// Entry points, as recorded in Cause.Via.
const (
	ViaRPC       = log.ViaRPC
	ViaFetch     = log.ViaFetch
	ViaAlarm     = log.ViaAlarm
	ViaWebSocket = log.ViaWebSocket
	ViaSystem    = log.ViaSystem
)

// Ctx is what a handler gets for one turn: the object's identity, its
// storage, the turn's cause, and the caller's context.Context (deadline and
// cancellation). It is valid for the turn only.
type Ctx struct {
	context.Context
	t *turn
}

// ID is the object's id.
func (c *Ctx) ID() ID { return c.t.a.id }

// Name is the object's name, or "" for an object addressed by unique id.
func (c *Ctx) Name() string { return c.t.a.name }

// Class is the object's class name.
func (c *Ctx) Class() string { return c.t.a.class.name }

// Storage is the object's storage as this turn sees it.
func (c *Ctx) Storage() *Storage { return c.t.st }

// Cause says who asked for this turn and through which entry point.
func (c *Ctx) Cause() Cause { return c.t.req.cause }

// Response is a Fetch handler's buffered HTTP response. It is released to
// the client only after the turn's writes are durable.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// fetchBodyBytesMax bounds a buffered Fetch response.
const fetchBodyBytesMax = 8 << 20

// recorder is the http.ResponseWriter a Fetch handler writes to.
type recorder struct {
	resp        Response
	wroteHeader bool
	overflow    bool
}

func newRecorder() *recorder {
	return &recorder{resp: Response{Status: http.StatusOK, Header: http.Header{}}}
}

func (r *recorder) Header() http.Header { return r.resp.Header }

func (r *recorder) WriteHeader(status int) {
	if r.wroteHeader || status < 100 || status > 999 {
		return
	}
	r.wroteHeader = true
	r.resp.Status = status
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if len(r.resp.Body)+len(b) > fetchBodyBytesMax {
		r.overflow = true
		return 0, tooLarge("fetch response", len(r.resp.Body)+len(b), fetchBodyBytesMax)
	}
	r.resp.Body = append(r.resp.Body, b...)
	return len(b), nil
}
