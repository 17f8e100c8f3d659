package filing_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/internal/tracing"
	"github.com/qualfile/qualfile/messages"
)

func tracer(rec *tracetest.SpanRecorder) trace.Tracer {
	return sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
}

// spansOf are the recorded spans of one trace.
func spansOf(rec *tracetest.SpanRecorder, tid trace.TraceID) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID() == tid {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.Emit()
		}
	}
	return ""
}

// A request published with a traceparent: every delivery is a span of that
// trace (a child of the publisher's span), each vendor attempt a child of
// its delivery with its attempt number, class and vendor code, and the
// result carries the trace on.
func TestOneTracePerFilingFromTheRequest(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	h := newHarness(t, harnessOpts{config: func(c *filing.Config) { c.Tracer = tracer(rec) }})
	h.sb.Inject(sandbox.Fault{API: messages.APIVMSAddQualification, Code: "SystemError", Count: 4}) // one delivery's attempts, then a redelivery
	h.run()

	pubCtx, pubSpan := tracer(tracetest.NewSpanRecorder()).Start(context.Background(), "onboarding.publish")
	m := nats.NewMsg(h.subjects.Request(messages.APIVMSAddQualification))
	m.Data = example(t, messages.APIVMSAddQualification, "traced-1")
	propagation.TraceContext{}.Inject(pubCtx, tracing.Header(m.Header))
	pubSpan.End()
	if _, err := h.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	got := h.results(1, 20*time.Second)["traced-1"]
	if got.Status != messages.StatusSucceeded {
		t.Fatalf("result %+v", got)
	}
	tid := pubSpan.SpanContext().TraceID()
	spans := waitAcked(t, rec, tid)
	deliveries, calls := 0, map[string]string{}
	for _, s := range spans {
		switch s.Name() {
		case "qualfile.delivery":
			deliveries++
			if s.Parent().SpanID() != pubSpan.SpanContext().SpanID() {
				t.Errorf("delivery %s: parent %s, want the publisher's span", attr(s, "qualfile.delivery"), s.Parent().SpanID())
			}
		case "vendor.call":
			calls[attr(s, "qualfile.attempt")] = attr(s, "qualfile.class") + "/" + attr(s, "qualfile.vendor_code")
		}
	}
	if deliveries < 2 {
		t.Errorf("%d delivery spans in the trace, want one per delivery (at least 2)", deliveries)
	}
	if len(calls) != 5 || calls["1"] != "transient/SystemError" || calls["5"] != "ok/" {
		t.Errorf("vendor call spans by attempt %v: want attempts 1-4 transient SystemError, 5 ok", calls)
	}
	for _, want := range []string{"ledger.claim", "ledger.write", "publish.audit"} {
		if !hasSpan(spans, want) {
			t.Errorf("no %s span in the trace", want)
		}
	}
	// The result and the audit events carry the trace on.
	for _, stream := range []string{h.Streams.Results, h.Streams.Audit} {
		msgs := h.streamMsgs(stream)
		if len(msgs) == 0 {
			t.Fatalf("%s is empty", stream)
		}
		carried := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), tracing.Header(msgs[len(msgs)-1].Header)))
		if carried.TraceID() != tid {
			t.Errorf("%s: traceparent %q, want trace %s", stream, msgs[len(msgs)-1].Header.Get("traceparent"), tid)
		}
	}
	noPersonalData(t, spans, m.Data)
}

// waitAcked waits until the trace holds the span of the delivery that was
// acknowledged (a delivery's span ends after its settle, which comes after
// its result), and returns the trace's spans.
func waitAcked(t *testing.T, rec *tracetest.SpanRecorder, tid trace.TraceID) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		spans := spansOf(rec, tid)
		for _, s := range spans {
			if s.Name() == "qualfile.delivery" && attr(s, "qualfile.settle") == "ack" {
				return spans
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no acknowledged delivery in trace %s (%d spans)", tid, len(spans))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func hasSpan(spans []sdktrace.ReadOnlySpan, name string) bool {
	for _, s := range spans {
		if s.Name() == name {
			return true
		}
	}
	return false
}

// noPersonalData: no span attribute holds a string of the payload (ID and
// phone numbers, names, file contents).
func noPersonalData(t *testing.T, spans []sdktrace.ReadOnlySpan, envelope []byte) {
	t.Helper()
	var env struct {
		Payload any `json:"payload"`
	}
	_ = json.Unmarshal(envelope, &env)
	var values []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		case string:
			if len(v) >= 6 {
				values = append(values, v)
			}
		}
	}
	walk(env.Payload)
	for _, s := range spans {
		for _, a := range s.Attributes() {
			for _, v := range values {
				if strings.Contains(a.Value.Emit(), v) {
					t.Errorf("span %s attribute %s holds %q from the payload", s.Name(), a.Key, v)
				}
			}
		}
	}
}

// Without a traceparent, the trace is derived from the request id: a
// delivery on one replica and the redelivery on another join one trace.
func TestOneTracePerFilingAcrossReplicas(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	_, nc, _ := natstest.JetStream(t)
	storm := sandbox.Fault{API: messages.APIVMSAddQualification, Code: "SystemError", Count: 4}
	// A hands the request back for a second: it is stopped long before the
	// redelivery, which only b can take.
	slow := filingtest.FastPolicy()
	slow.RedeliveryBase, slow.RedeliveryMax = time.Second, 2*time.Second
	a := newHarness(t, harnessOpts{nc: nc, owner: "replica-a", policy: slow, config: func(c *filing.Config) { c.Tracer = tracer(rec) }})
	a.sb.Inject(storm)
	stopA := a.run()
	a.publish(messages.APIVMSAddQualification, "traced-2", example(t, messages.APIVMSAddQualification, "traced-2"))
	deadline := time.Now().Add(10 * time.Second)
	for a.sb.CountCalls(messages.APIVMSAddQualification) < 4 {
		if time.Now().After(deadline) {
			t.Fatal("replica a made no attempts")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopA() // its delivery was handed back to wait in the broker
	b := newHarness(t, harnessOpts{nc: nc, owner: "replica-b", sb: a.sb, config: func(c *filing.Config) { c.Tracer = tracer(rec) }})
	b.run()
	if got := b.results(1, 20*time.Second)["traced-2"]; got.Status != messages.StatusSucceeded {
		t.Fatalf("result %+v", got)
	}
	tid := trace.SpanContextFromContext(tracing.Extract(context.Background(), nil, "traced-2")).TraceID()
	replicas := map[string]bool{}
	for _, s := range waitAcked(t, rec, tid) {
		if s.Name() == "qualfile.delivery" {
			replicas[attr(s, "qualfile.replica")] = true
		}
	}
	if !replicas["replica-a"] || !replicas["replica-b"] {
		t.Errorf("deliveries in the request's trace came from %v, want both replicas", replicas)
	}
	for _, s := range rec.Ended() {
		if s.Name() == "qualfile.delivery" && attr(s, "qualfile.request_id") == "traced-2" && s.SpanContext().TraceID() != tid {
			t.Errorf("a delivery of traced-2 in another trace %s", s.SpanContext().TraceID())
		}
	}
}
