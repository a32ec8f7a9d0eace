// Package tracing sets up OpenTelemetry tracing for a node: an OTLP/HTTP
// exporter and a sampler. Tracing is off unless an endpoint is given.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Config configures tracing.
type Config struct {
	// Endpoint is the OTLP/HTTP collector's URL (http://host:4318, the
	// path /v1/traces added if absent). Required.
	Endpoint string
	// SampleRatio is the share of new traces sampled, 0 to 1. A request
	// whose traceparent says sampled is always sampled (parent based).
	SampleRatio float64
	// Node names the node in the spans' resource (strata.node).
	Node string
}

// Tracing is a running tracer provider.
type Tracing struct {
	tp *sdktrace.TracerProvider
}

// Start validates cfg and starts the exporter. It does not contact the
// collector: spans that cannot be sent are dropped and logged by the SDK.
func Start(ctx context.Context, cfg Config) (*Tracing, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("tracing: an OTLP endpoint is required")
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, fmt.Errorf("tracing: sample ratio %v is outside 0..1", cfg.SampleRatio)
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("tracing: OTLP endpoint %q: want http(s)://host:port[/path]", cfg.Endpoint)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/traces"
	}
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter for %s: %w", cfg.Endpoint, err)
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", "strata")}
	if cfg.Node != "" {
		attrs = append(attrs, attribute.String("strata.node", cfg.Node))
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
		sdktrace.WithResource(resource.NewSchemaless(attrs...)),
	)
	return &Tracing{tp: tp}, nil
}

// Tracer is the tracer the gateway uses.
func (t *Tracing) Tracer() trace.Tracer {
	return t.tp.Tracer("github.com/strata-objects/strata")
}

// Close sends the spans still buffered, within ctx, and stops.
func (t *Tracing) Close(ctx context.Context) error {
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}
