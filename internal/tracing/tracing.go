// Package tracing carries OpenTelemetry trace context through NATS
// messages (W3C traceparent and tracestate headers) and sets up the
// exporter from the standard OTel environment (off unless an OTLP endpoint
// is configured).
package tracing

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Propagator is the W3C trace context: traceparent and tracestate.
var Propagator = propagation.TraceContext{}

// Header adapts a NATS message header to the propagator.
type Header nats.Header

// Get returns the first value of key.
func (h Header) Get(key string) string { return nats.Header(h).Get(key) }

// Set sets key.
func (h Header) Set(key, value string) { nats.Header(h).Set(key, value) }

// Keys lists the header's keys.
func (h Header) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

// Inject writes the span context of ctx into m's header.
func Inject(ctx context.Context, m *nats.Msg) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	if m.Header == nil {
		m.Header = nats.Header{}
	}
	Propagator.Inject(ctx, Header(m.Header))
}

// Extract returns ctx with the remote span context of h (its traceparent).
// Without a valid one, the trace is derived from key (the request id, or
// for an undecodable message its stream sequence), so that every delivery
// of one request, on any replica, joins one trace: its trace id is the
// first 16 bytes of SHA-256("qualfile/" + key), its parent span id the
// next 8.
func Extract(ctx context.Context, h nats.Header, key string) context.Context {
	if h != nil {
		if out := Propagator.Extract(ctx, Header(h)); trace.SpanContextFromContext(out).IsValid() {
			return out
		}
	}
	sum := sha256.Sum256([]byte("qualfile/" + key))
	var tid trace.TraceID
	var sid trace.SpanID
	copy(tid[:], sum[:16])
	copy(sid[:], sum[16:24])
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true})
	return trace.ContextWithRemoteSpanContext(ctx, sc)
}

// Provider is a tracer provider and the function that flushes and stops it.
type Provider struct {
	trace.TracerProvider
	Shutdown func(context.Context) error
}

// Setup returns the tracer provider the standard OTel environment asks for:
// an OTLP/HTTP exporter when OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
// OTEL_EXPORTER_OTLP_ENDPOINT is set (and OTEL_SDK_DISABLED is not true),
// sending in batches; a no-op provider otherwise. The exporter reads the
// other OTEL_EXPORTER_OTLP_* settings (headers, timeout, TLS) itself.
func Setup(ctx context.Context, getenv func(string) string, service, version string) (Provider, error) {
	off := Provider{TracerProvider: noop.NewTracerProvider(), Shutdown: func(context.Context) error { return nil }}
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return off, nil
	}
	var opts []otlptracehttp.Option
	switch {
	case getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != "":
		opts = append(opts, otlptracehttp.WithEndpointURL(getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")))
	case getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "":
		opts = append(opts, otlptracehttp.WithEndpointURL(strings.TrimRight(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "/")+"/v1/traces"))
	default:
		return off, nil
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return off, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	res := resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(version))
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return Provider{TracerProvider: tp, Shutdown: tp.Shutdown}, nil
}
