package filing

import (
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/messages"
)

// observe derives the log line and the metrics of one audit event, once
// it is published. The audit event is the one emission of
// a state change; logs and dashboards are views of it, so they cannot
// disagree with the trail. Every value that came from a message is bounded
// (ids, accounts) or is one of a fixed set (api, event, class) before it
// becomes a label or a field.
func (p *Processor) observe(seq uint64, ev messages.AuditEvent) {
	api := apiLabel(ev.API)
	switch ev.Event {
	case messages.EventAttempt:
		p.metrics.Attempt(api, classLabel(ev.Class), time.Duration(ev.DurationMS*float64(time.Millisecond)))
	case messages.EventDeadLetter:
		p.metrics.DeadLetter(api, classLabel(ev.Class))
	case messages.EventUndecodable:
		p.metrics.DeadLetter(api, messages.ClassInvalid)
		p.metrics.Request(api, ev.Event)
	case messages.EventDuplicate:
		p.metrics.LedgerHit(api, "done")
		p.metrics.Request(api, ev.Event)
	case messages.EventReceived:
	default:
		p.metrics.Request(api, ev.Event)
	}
	level := zapcore.InfoLevel
	switch ev.Event {
	case messages.EventConflict:
		level = zapcore.ErrorLevel
	case messages.EventAmbiguous, messages.EventDeadLetter, messages.EventUndecodable, messages.EventFailed:
		level = zapcore.WarnLevel // a person may have to act
	}
	if ce := p.log.Check(level, ev.Event); ce != nil {
		fields := []zap.Field{zap.String("request_id", ev.RequestID), zap.String("api", api),
			zap.String("account", messages.Truncate(ev.Account, messages.MaxAccountLen)), zap.Int("delivery", ev.Delivery), zap.Uint64("stream_seq", seq)}
		if ev.Attempt > 0 {
			fields = append(fields, zap.Int("attempt", ev.Attempt))
		}
		if ev.Status != "" {
			fields = append(fields, zap.String("status", string(ev.Status)))
		}
		if ev.Class != "" || ev.Code != "" {
			fields = append(fields, zap.String("class", ev.Class), zap.String("code", messages.Truncate(ev.Code, 64)))
		}
		if ev.UpstreamRequestID != "" {
			fields = append(fields, zap.String("upstream_request_id", messages.Truncate(ev.UpstreamRequestID, 128)))
		}
		if ev.Event == messages.EventAttempt {
			fields = append(fields, zap.Float64("duration_ms", ev.DurationMS))
		}
		if ev.Message != "" && ev.Event != messages.EventAttempt {
			fields = append(fields, zap.String("message", messages.Truncate(ev.Message, 300)))
		}
		if ev.Operator != "" {
			fields = append(fields, zap.String("operator", ev.Operator), zap.String("reason", messages.Truncate(ev.Reason, 300)))
		}
		ce.Write(fields...)
	}
}

// log is the delivery's logger, for what is not a state change (broker
// trouble, a failed settle, a panic).
func (r *runner) log() *zap.Logger {
	m := r.d.msg
	fields := []zap.Field{zap.String("api", apiLabel(m.subjectAPI)), zap.Uint64("stream_seq", m.seq), zap.Int("delivery", m.deliveries)}
	if m.req != nil {
		fields = append(fields, zap.String("request_id", boundID(m.req.ID)))
	}
	return r.p.log.With(fields...)
}

// MetricLabels are the values the processor gives each label: every api
// and "unknown", every outcome, class, dead-letter class and ledger state
// it records (see observe), for metrics.Preset.
func MetricLabels() metrics.Labels {
	apis := []string{"unknown"}
	for _, a := range messages.APIs() {
		apis = append(apis, string(a))
	}
	return metrics.Labels{
		APIs: apis,
		Outcomes: []string{messages.EventSucceeded, messages.EventFailed, messages.EventRejected, messages.EventAmbiguous,
			messages.EventDeferred, messages.EventDuplicate, messages.EventUndecodable, messages.EventSettled, messages.EventConflict,
			messages.EventReconciling, messages.EventReconciled, messages.EventRefiled,
			messages.EventReplayed, messages.EventResolved, messages.EventDeadRemoved},
		Classes:      []string{"ok", "transient", "throttled", "permanent", "invalid", "ambiguous", "other"},
		DeadReasons:  []string{"transient", "throttled", "permanent", "invalid", "ambiguous", "other"},
		LedgerStates: []string{"done"},
	}
}

// apiLabel is an api as a label value: a known api or "unknown".
func apiLabel(api messages.API) string { return string(subjectAPI(api)) }

// classLabel is an error class as a label value, from a fixed set.
func classLabel(class string) string {
	switch class {
	case "", "ok":
		return "ok"
	case "transient", "throttled", "permanent", "invalid", "ambiguous":
		return class
	}
	return "other"
}
