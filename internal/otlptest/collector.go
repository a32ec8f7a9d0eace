// Package otlptest is an OTLP/HTTP trace receiver for tests: a real HTTP
// server that decodes the exporter's protobuf requests and keeps the spans.
package otlptest

import (
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one received span, ids in lowercase hex.
type Span struct {
	Name    string
	TraceID string
	SpanID  string
	Parent  string // "" for a root span
	Node    string // the resource's strata.node
	Attrs   map[string]string
}

func (s Span) String() string {
	return fmt.Sprintf("%s[%s] trace %s span %s parent %s", s.Name, s.Node, s.TraceID, s.SpanID, s.Parent)
}

// Collector receives spans at URL+"/v1/traces".
type Collector struct {
	srv *httptest.Server
	URL string

	mu    sync.Mutex
	spans []Span
	errs  []error
}

// Start starts a collector; Close stops it.
func Start() *Collector {
	c := &Collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(c.serve))
	c.URL = c.srv.URL
	return c
}

// Close stops the collector.
func (c *Collector) Close() { c.srv.Close() }

func (c *Collector) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			c.fail(w, fmt.Errorf("gzip: %w", err))
			return
		}
		body = zr
	}
	b, err := io.ReadAll(body)
	if err != nil {
		c.fail(w, err)
		return
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		c.fail(w, fmt.Errorf("decode ExportTraceServiceRequest: %w", err))
		return
	}
	var got []Span
	for _, rs := range req.GetResourceSpans() {
		node := attrs(rs.GetResource().GetAttributes())["strata.node"]
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				got = append(got, Span{
					Name: s.GetName(), TraceID: hex.EncodeToString(s.GetTraceId()), SpanID: hex.EncodeToString(s.GetSpanId()),
					Parent: hex.EncodeToString(s.GetParentSpanId()), Node: node, Attrs: attrs(s.GetAttributes()),
				})
			}
		}
	}
	c.mu.Lock()
	c.spans = append(c.spans, got...)
	c.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func (c *Collector) fail(w http.ResponseWriter, err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func attrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		v := kv.GetValue()
		switch {
		case v.GetStringValue() != "":
			m[kv.GetKey()] = v.GetStringValue()
		default:
			m[kv.GetKey()] = strings.TrimSpace(fmt.Sprint(v.GetIntValue()))
		}
	}
	return m
}

// Spans returns the spans received so far, and any request the collector
// could not decode.
func (c *Collector) Spans() ([]Span, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if len(c.errs) > 0 {
		err = c.errs[0]
	}
	return append([]Span(nil), c.spans...), err
}

// Trace returns the spans of one trace.
func (c *Collector) Trace(traceID string) []Span {
	all, _ := c.Spans()
	var out []Span
	for _, s := range all {
		if s.TraceID == traceID {
			out = append(out, s)
		}
	}
	return out
}
