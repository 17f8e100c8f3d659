// Package metrics holds qualfile's Prometheus collectors.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the consumer's collectors. A nil *Metrics records nothing, so
// tests and tools may pass nil.
type Metrics struct {
	Requests        *prometheus.CounterVec   // by api and outcome
	Attempts        *prometheus.CounterVec   // by api and class ("" for success)
	UpstreamLatency *prometheus.HistogramVec // by api
	InFlight        prometheus.Gauge
	Redeliveries    *prometheus.CounterVec // by api
	DeadLetters     *prometheus.CounterVec // by api and reason class
	LedgerHits      *prometheus.CounterVec // by api and state found
	// JetStream health (internal/jshealth).
	JetStreamReady         prometheus.Gauge // 1 ready, 0 not
	JetStreamProbeFailures prometheus.Gauge // consecutive failed probes
	JetStreamReconnects    prometheus.Counter
	// The shared durable consumer, as the server counts it.
	ConsumerPending    prometheus.Gauge // messages not yet delivered
	ConsumerAckPending prometheus.Gauge // delivered, not yet acknowledged
	BuildInfo          *prometheus.GaugeVec
	// The vendors' circuit breakers and rate limits (internal/guard), by
	// vendor and account (accounts of the configuration only).
	Breaker        *prometheus.GaugeVec // 0 closed, 1 half open, 2 open
	VendorRate     *prometheus.GaugeVec // calls per second allowed now; -1 for no limit
	ConsumerPaused prometheus.Gauge     // 1 while this replica has the shared consumer paused
}

// Labels are the values each label may take, known when the process
// starts: Preset creates every series of them at zero, so that a rate or
// an alert has a series before the first event.
type Labels struct {
	APIs, Outcomes, Classes, DeadReasons, LedgerStates []string
}

// New registers the collectors with reg.
func New(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "qualfile", Name: name, Help: help}
	}
	gauge := func(name, help string) prometheus.Gauge { return f.NewGauge(prometheus.GaugeOpts(opts(name, help))) }
	perAccount := []string{"vendor", "account"}
	return &Metrics{
		Requests: f.NewCounterVec(prometheus.CounterOpts(opts("requests_total",
			"Requests handled, by api and outcome (succeeded, rejected, failed, deferred, duplicate, undecodable, ambiguous).")), []string{"api", "outcome"}),
		Attempts: f.NewCounterVec(prometheus.CounterOpts(opts("upstream_attempts_total",
			"Upstream calls, by api and error class (ok for success).")), []string{"api", "class"}),
		UpstreamLatency: f.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "qualfile", Name: "upstream_latency_seconds",
			Help:    "Latency of upstream calls, by api.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"api"}),
		InFlight:     gauge("in_flight", "Requests being handled now."),
		Redeliveries: f.NewCounterVec(prometheus.CounterOpts(opts("redeliveries_total", "Deliveries after the first, by api.")), []string{"api"}),
		DeadLetters: f.NewCounterVec(prometheus.CounterOpts(opts("dead_letters_total",
			"Messages moved to the dead-letter stream, by api and reason.")), []string{"api", "reason"}),
		LedgerHits: f.NewCounterVec(prometheus.CounterOpts(opts("ledger_hits_total",
			"Deliveries whose request id was already in the ledger, by api and state found.")), []string{"api", "state"}),
		JetStreamReady: gauge("jetstream_ready",
			"1 while JetStream health probes succeed, 0 after the configured number of consecutive failures."),
		JetStreamProbeFailures: gauge("jetstream_probe_failures", "Consecutive failed JetStream health probes (0 after a success)."),
		JetStreamReconnects: f.NewCounter(prometheus.CounterOpts(opts("jetstream_forced_reconnects_total",
			"Reconnects to another NATS server forced because JetStream health probes kept failing."))),
		ConsumerPending: gauge("consumer_pending",
			"Requests in the stream not yet delivered to any replica (the shared consumer's num_pending)."),
		ConsumerAckPending: gauge("consumer_ack_pending",
			"Requests delivered to a replica and not yet acknowledged (the shared consumer's num_ack_pending)."),
		BuildInfo: f.NewGaugeVec(prometheus.GaugeOpts(opts("build_info",
			"1, labelled with the running binary's version, commit and Go version.")), []string{"version", "commit", "goversion"}),
		Breaker: f.NewGaugeVec(prometheus.GaugeOpts(opts("breaker_state",
			"Circuit breaker of a vendor account: 0 closed, 1 half open (probing), 2 open (calls held back).")), perAccount),
		VendorRate: f.NewGaugeVec(prometheus.GaugeOpts(opts("vendor_rate_limit",
			"Calls per second this replica allows itself to a vendor account now (lowered after throttling); -1 for no limit.")), perAccount),
		ConsumerPaused: gauge("consumer_paused",
			"1 while this replica has paused the shared consumer on the server because every vendor account's breaker is open."),
	}
}

// Preset creates every series of l at zero.
func (m *Metrics) Preset(l Labels) {
	if m == nil {
		return
	}
	for _, api := range l.APIs {
		for _, o := range l.Outcomes {
			m.Requests.WithLabelValues(api, o)
		}
		for _, c := range l.Classes {
			m.Attempts.WithLabelValues(api, c)
		}
		for _, r := range l.DeadReasons {
			m.DeadLetters.WithLabelValues(api, r)
		}
		for _, st := range l.LedgerStates {
			m.LedgerHits.WithLabelValues(api, st)
		}
		m.UpstreamLatency.WithLabelValues(api)
		m.Redeliveries.WithLabelValues(api)
	}
}

// Build records the running binary's build.
func (m *Metrics) Build(version, commit, goVersion string) {
	if m != nil {
		m.BuildInfo.WithLabelValues(version, commit, goVersion).Set(1)
	}
}

// Consumer records the shared consumer's backlog.
func (m *Metrics) Consumer(pending uint64, ackPending int) {
	if m != nil {
		m.ConsumerPending.Set(float64(pending))
		m.ConsumerAckPending.Set(float64(ackPending))
	}
}

// Request counts one request outcome.
func (m *Metrics) Request(api, outcome string) {
	if m != nil {
		m.Requests.WithLabelValues(api, outcome).Inc()
	}
}

// Attempt counts one upstream call and its latency.
func (m *Metrics) Attempt(api, class string, d time.Duration) {
	if m == nil {
		return
	}
	if class == "" {
		class = "ok"
	}
	m.Attempts.WithLabelValues(api, class).Inc()
	m.UpstreamLatency.WithLabelValues(api).Observe(d.Seconds())
}

// InFlightAdd moves the in-flight gauge.
func (m *Metrics) InFlightAdd(n float64) {
	if m != nil {
		m.InFlight.Add(n)
	}
}

// Redelivery counts a delivery after the first.
func (m *Metrics) Redelivery(api string) {
	if m != nil {
		m.Redeliveries.WithLabelValues(api).Inc()
	}
}

// DeadLetter counts a dead letter.
func (m *Metrics) DeadLetter(api, reason string) {
	if m != nil {
		m.DeadLetters.WithLabelValues(api, reason).Inc()
	}
}

// LedgerHit counts a delivery whose id was already recorded.
func (m *Metrics) LedgerHit(api, state string) {
	if m != nil {
		m.LedgerHits.WithLabelValues(api, state).Inc()
	}
}

// JetStreamHealth records the JetStream health state.
func (m *Metrics) JetStreamHealth(ready bool, consecutiveFailures int) {
	if m == nil {
		return
	}
	v := 0.0
	if ready {
		v = 1
	}
	m.JetStreamReady.Set(v)
	m.JetStreamProbeFailures.Set(float64(consecutiveFailures))
}

// JetStreamReconnect counts a reconnect forced by the health watcher.
func (m *Metrics) JetStreamReconnect() {
	if m != nil {
		m.JetStreamReconnects.Inc()
	}
}

// Guard records a vendor account's breaker state (0 closed, 1 half open,
// 2 open) and its current rate (-1 for no limit).
func (m *Metrics) Guard(vendor, account string, state int, rate float64) {
	if m == nil {
		return
	}
	m.Breaker.WithLabelValues(vendor, account).Set(float64(state))
	m.VendorRate.WithLabelValues(vendor, account).Set(rate)
}

// Paused records whether this replica has the shared consumer paused.
func (m *Metrics) Paused(paused bool) {
	if m == nil {
		return
	}
	v := 0.0
	if paused {
		v = 1
	}
	m.ConsumerPaused.Set(v)
}
