package filing

import (
	"context"
	"strconv"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/qualfile/qualfile/internal/tracing"
	"github.com/qualfile/qualfile/messages"
)

// One trace per filing: a span for each delivery (a child of the request
// message's traceparent, or of a parent derived from the request id, so
// that every delivery on any replica joins one trace), with a child for
// each ledger step, vendor call or read, file fetch and publish. The
// attributes say what happened, never to whom: api, account, attempt,
// class, vendor code, upstream request id; no payload, name or number.

// startSpan starts the delivery's span.
func (r *runner) startSpan() {
	m := r.d.msg
	key := "seq:" + strconv.FormatUint(m.seq, 10)
	if m.req != nil && m.req.ID != "" {
		key = spanValue(boundID(m.req.ID))
	}
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("qualfile.api", apiLabel(m.subjectAPI)),
		attribute.String("qualfile.replica", spanValue(r.p.cfg.Owner)),
		attribute.String("qualfile.request_id", key),
		attribute.Int("qualfile.delivery", m.deliveries),
		attribute.Int64("qualfile.stream_seq", int64(m.seq)),
	}
	if m.req != nil && m.req.API.Valid() && m.invalid == nil {
		attrs = append(attrs, attribute.String("qualfile.account", spanValue(messages.Truncate(m.req.AccountOrDefault(), messages.MaxAccountLen))))
	}
	parent := tracing.Extract(context.Background(), r.msg.Headers(), key)
	r.tctx, r.span = r.p.cfg.Tracer.Start(parent, "qualfile.delivery", trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
}

// stepNamesForSpans are the steps that get a span of their own.
var stepSpanNames = map[stepKind]string{
	stepClaim: "ledger.claim", stepRead: "ledger.read", stepWrite: "ledger.write",
	stepCall: "vendor.call", stepReconcile: "vendor.read", stepBaseline: "vendor.read", stepFiles: "files.fetch", stepRemoveFiles: "files.remove",
	stepEmit: "publish.audit", stepEvent: "publish.audit", stepResult: "publish.result", stepDeadLetter: "publish.dead_letter",
}

// stepSpan starts the span of step s, nil for a step without one.
func (r *runner) stepSpan(s step) trace.Span {
	name := stepSpanNames[s.kind]
	if name == "" || r.span == nil {
		return nil
	}
	kind := trace.SpanKindInternal
	switch s.kind {
	case stepCall, stepReconcile, stepBaseline:
		kind = trace.SpanKindClient
	case stepEmit, stepEvent, stepResult, stepDeadLetter:
		kind = trace.SpanKindProducer
	}
	_, span := r.p.cfg.Tracer.Start(r.tctx, name, trace.WithSpanKind(kind))
	switch s.kind {
	case stepClaim, stepWrite:
		span.SetAttributes(attribute.String("qualfile.ledger.state", string(s.entry.State)))
	case stepEmit:
		span.SetAttributes(attribute.Bool("qualfile.with_result", s.result != nil))
	}
	return span
}

// endStepSpan records what the step did (its answer a) and ends its span.
// A broker error's text goes in (it holds no personal data); a vendor's
// answer is its class and code only.
func (r *runner) endStepSpan(span trace.Span, s step, a answer) {
	call := r.d.call
	switch s.kind {
	case stepCall:
		if _, ok := a.(held); ok {
			span.SetAttributes(attribute.String("qualfile.class", "held"))
			break
		}
		code, _, _ := describe(call.err)
		attrs := []attribute.KeyValue{
			attribute.Int("qualfile.attempt", r.d.ledger.entry.Attempts),
			attribute.String("qualfile.class", classLabel(string(call.class))),
			attribute.String("qualfile.vendor_code", spanValue(messages.Truncate(code, 64))),
		}
		if up := call.out.UpstreamRequestID; up != "" {
			attrs = append(attrs, attribute.String("qualfile.upstream_request_id", spanValue(messages.Truncate(up, 128))))
		}
		span.SetAttributes(attrs...)
		if call.err != nil {
			span.SetStatus(codes.Error, string(call.class))
		}
	case stepReconcile:
		span.SetAttributes(attribute.Int("qualfile.reads", r.d.recon.reads), attribute.Int("qualfile.matches", len(r.d.recon.finding.Records)))
	case stepFiles:
		span.SetAttributes(attribute.Bool("qualfile.files_usable", call.filesErr == nil))
	}
	if err, _ := failure(a); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, s.kind.String()+" failed")
	}
	span.End()
}

// spanValue is s as a valid UTF-8 attribute value.
func spanValue(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }
