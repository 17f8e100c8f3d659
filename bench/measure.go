package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/messages"
)

// collector counts the results of one run with a core NATS subscription
// on the run's result subjects (results carry the request id). It samples
// the CPU of the pipeline's process and of the driver at the first and at
// the want-th distinct result, and, when publish times are given, measures
// each request's latency from publish to result.
type collector struct {
	sub  *nats.Subscription
	want int
	pid  atomic.Int64 // the pipeline's process

	// Latency: publish times (UnixNano) by request index, set by the
	// publisher before each publish; requests below skip are warm-up.
	pubNanos []atomic.Int64
	skip     int

	mu       sync.Mutex
	seen     []bool
	distinct int
	dups     int
	foreign  int
	statuses map[string]int
	first    sample
	last     sample
	lastAt   time.Time // of the latest result, for stall detection
	lat      []time.Duration
	cpuErr   error
	done     chan struct{}
}

// sample is the time and CPU counters at one result.
type sample struct {
	at       time.Time
	pipeline time.Duration
	driver   time.Duration
}

func (b *bench) collect(prefix string, want int, pubNanos []atomic.Int64, skip int) (*collector, error) {
	c := &collector{want: want, pubNanos: pubNanos, skip: skip, seen: make([]bool, want),
		statuses: map[string]int{}, done: make(chan struct{}), lastAt: time.Now()}
	if pubNanos != nil {
		c.lat = make([]time.Duration, 0, max(0, want-skip))
	}
	sub, err := b.nc.Subscribe(messages.Subjects{Prefix: prefix}.AllResults(), c.handle)
	if err != nil {
		return nil, err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	c.sub = sub
	// The subscription is in place on the server before anything is
	// published or started.
	if err := b.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, err
	}
	return c, nil
}

var (
	keyRequestID = []byte(`"request_id":"`)
	keyStatus    = []byte(`"status":"`)
)

// field is the string value of the first "key":"…" in data (the result
// writers put neither quotes nor escapes in ids and statuses).
func field(data, key []byte) []byte {
	i := bytes.Index(data, key)
	if i < 0 {
		return nil
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}

func (c *collector) handle(m *nats.Msg) {
	now := time.Now()
	id, status := field(m.Data, keyRequestID), field(m.Data, keyStatus)
	if id == nil || status == nil {
		var r struct {
			RequestID string `json:"request_id"`
			Status    string `json:"status"`
		}
		if json.Unmarshal(m.Data, &r) == nil {
			id, status = []byte(r.RequestID), []byte(r.Status)
		}
	}
	idx, ok := requestIndex(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastAt = now
	if !ok || idx >= c.want {
		c.foreign++
		return
	}
	if c.seen[idx] {
		c.dups++
		return
	}
	c.seen[idx] = true
	c.distinct++
	c.statuses[string(status)]++
	if c.pubNanos != nil && idx >= c.skip {
		if p := c.pubNanos[idx].Load(); p != 0 {
			c.lat = append(c.lat, now.Sub(time.Unix(0, p)))
		}
	}
	if c.distinct == 1 {
		c.first = c.sampleNow(now)
	}
	if c.distinct == c.want {
		c.last = c.sampleNow(now)
		close(c.done)
	}
}

func (c *collector) sampleNow(now time.Time) sample {
	s := sample{at: now, driver: selfCPU()}
	if pid := int(c.pid.Load()); pid != 0 {
		cpu, err := processCPU(pid)
		if err != nil && c.cpuErr == nil {
			c.cpuErr = err
		}
		s.pipeline = cpu
	}
	return s
}

// count is the distinct results so far.
func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.distinct
}

// wait waits until every result is in, or no result came for stall, or
// the pipeline's process exits, or until is reached (zero: no limit), or
// ctx ends. It returns nil only when every result is in.
func (c *collector) wait(ctx context.Context, ch *child, stall time.Duration, until time.Time) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-c.done:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-ch.done:
			select {
			case <-c.done:
				return nil
			default:
			}
			return fmt.Errorf("%s: %w (%v) with %d of %d results:\n%s", ch.name, errExited, ch.err, c.count(), c.want, ch.logTail(30))
		case <-tick.C:
		}
		c.mu.Lock()
		idle, n := time.Since(c.lastAt), c.distinct
		c.mu.Unlock()
		if idle > stall {
			return fmt.Errorf("%s: no result for %s, %d of %d results:\n%s", ch.name, stall.Round(time.Second), n, c.want, ch.logTail(20))
		}
		if !until.IsZero() && time.Now().After(until) {
			return errDeadline
		}
	}
}

// errDeadline is collector.wait's answer when its time limit is reached.
var errDeadline = errors.New("time limit reached")

// close ends the subscription, after which no handler runs.
func (c *collector) close() {
	_ = c.sub.Unsubscribe()
}

// snapshot is what the collector has counted.
type snapshot struct {
	distinct, dups, foreign int
	statuses                map[string]int
	first, last             sample
	lat                     []time.Duration
	cpuErr                  error
}

func (c *collector) snapshot() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return snapshot{distinct: c.distinct, dups: c.dups, foreign: c.foreign, statuses: cloneCounts(c.statuses),
		first: c.first, last: c.last, lat: slices.Clone(c.lat), cpuErr: c.cpuErr}
}

func cloneCounts(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// rssSampler samples a process's VmRSS every interval until finish.
type rssSampler struct {
	pid      int
	stop     chan struct{}
	finished chan struct{}
	max      atomic.Int64
	samples  atomic.Int64
}

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{pid: pid, stop: make(chan struct{}), finished: make(chan struct{})}
	take := func() {
		if m, err := processMemory(pid); err == nil && m.RSS > 0 {
			s.samples.Add(1)
			if m.RSS > s.max.Load() {
				s.max.Store(m.RSS)
			}
		}
	}
	take()
	go func() {
		defer close(s.finished)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				take()
			}
		}
	}()
	return s
}

// finish stops sampling (with one last sample) and returns the largest
// VmRSS seen, in bytes.
func (s *rssSampler) finish() int64 {
	close(s.stop)
	<-s.finished
	if m, err := processMemory(s.pid); err == nil && m.RSS > s.max.Load() {
		s.max.Store(m.RSS)
	}
	return s.max.Load()
}

// publisher is the driver's JetStream context for publishing requests
// asynchronously, with the failures of the current publish.
type publisher struct {
	jetstream.JetStream
	failed   atomic.Int64
	firstErr atomic.Value
}

func newPublisher(nc *nats.Conn) (*publisher, error) {
	p := &publisher{}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(time.Minute),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) {
			if p.failed.Add(1) == 1 {
				p.firstErr.Store(err)
			}
		}))
	p.JetStream = js
	return p, err
}

// publish publishes requests from to from+n-1 of a run to its request
// subject, asynchronously, and waits until the stream has acknowledged
// every one. at, when given, receives each request's publish time, and
// rate, when positive, paces the publishing (requests per second).
func (b *bench) publish(ctx context.Context, prefix string, from, n int, at []atomic.Int64, rate float64) error {
	subject := messages.Subjects{Prefix: prefix}.Request(b.reqs.api)
	js := b.pub
	js.failed.Store(0)
	start := time.Now()
	report := time.Now()
	for i := from; i < from+n; {
		due := min(from+n, i+10000) // in chunks, to check ctx and report progress
		if rate > 0 {
			due = min(due, from+int(rate*time.Since(start).Seconds())+1)
		}
		for ; i < due; i++ {
			if at != nil {
				at[i].Store(time.Now().UnixNano())
			}
			// With 4,096 unacknowledged, a publish waits (up to a minute)
			// for acks: a server that fsyncs every write is slow to give
			// them.
			if _, err := js.PublishAsync(subject, b.reqs.data(i), jetstream.WithMsgID(b.reqs.id(i)), jetstream.WithStallWait(time.Minute)); err != nil {
				return fmt.Errorf("publish %s: %w", b.reqs.id(i), err)
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rate > 0 && i < from+n {
			time.Sleep(time.Millisecond)
		}
		if n >= 100000 && time.Since(report) > 10*time.Second {
			report = time.Now()
			b.logf("  published %d of %d", i-from, n)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Minute):
		return fmt.Errorf("publishing %d requests: not all acknowledged within 5 minutes", n)
	}
	if f := js.failed.Load(); f > 0 {
		return fmt.Errorf("publishing %d requests: %d failed, the first with: %v", n, f, js.firstErr.Load())
	}
	return nil
}

// throughputRun is one measured drain of a backlog by one pipeline.
type throughputRun struct {
	Pipeline    string         `json:"pipeline"`
	Repeat      int            `json:"repeat"`
	Prefix      string         `json:"prefix"`
	Concurrency int            `json:"concurrency"`
	Requests    int            `json:"requests"`
	Results     int            `json:"results"`
	Duplicates  int            `json:"duplicate_results"`
	Statuses    map[string]int `json:"statuses"`
	// Window is from the first to the last result.
	WindowSeconds float64 `json:"window_seconds"`
	FilingsPerSec float64 `json:"filings_per_second"`
	// CPU seconds per 1,000 filings over the window.
	PipelineCPU float64 `json:"pipeline_cpu_s_per_1k"`
	DriverCPU   float64 `json:"driver_cpu_s_per_1k"`
	AllCPU      float64 `json:"all_cpu_s_per_1k"`
	// Memory of the pipeline's process: VmHWM at the end, the largest
	// VmRSS sampled every 100 ms.
	PeakRSSMiB       float64 `json:"peak_rss_mib"`
	MaxSampledRSSMiB float64 `json:"max_sampled_rss_mib"`
	StartSeconds     float64 `json:"start_seconds"`
	// The upstream during the run (process start to last result).
	UpstreamCalls    int64  `json:"upstream_calls"`
	UpstreamNewConns int64  `json:"upstream_new_connections"`
	UpstreamMaxOpen  int64  `json:"upstream_max_open_connections"`
	UpstreamTokens   int64  `json:"upstream_token_fetches"`
	UpstreamRefused  int64  `json:"upstream_refused"`
	Error            string `json:"error,omitempty"`
}

// drain measures one pipeline draining a backlog of n requests: the
// backlog is published first, then the pipeline's process is started, and
// the clock runs from the first result to the n-th.
func (b *bench) drain(ctx context.Context, pipeline string, repeat, n, concurrency int) (throughputRun, error) {
	prefix := b.nextPrefix(pipeline)
	r := throughputRun{Pipeline: pipeline, Repeat: repeat, Prefix: prefix, Concurrency: concurrency, Requests: n}
	defer b.deleteStreams(ctx, prefix)
	if err := b.prepareStreams(ctx, pipeline, prefix); err != nil {
		return r, err
	}
	if err := b.publish(ctx, prefix, 0, n, nil, 0); err != nil {
		return r, err
	}
	col, err := b.collect(prefix, n, nil, 0)
	if err != nil {
		return r, err
	}
	defer col.close()
	b.up.resetMaxOpen()
	before := b.up.counts()
	started := time.Now()
	ch, err := b.startPipeline(ctx, pipeline, prefix, concurrency)
	if err != nil {
		return r, err
	}
	defer ch.stop(10 * time.Second)
	col.pid.Store(int64(ch.pid()))
	r.StartSeconds = time.Since(started).Seconds()
	rss := sampleRSS(ch.pid(), 100*time.Millisecond)
	var profiled chan error
	if pipeline == pipelineQualfile && repeat == 1 && b.o.Profile != "" {
		profiled = make(chan error, 1)
		go func() { profiled <- profile(ctx, ch, 3*time.Second, b.o.Profile) }()
	}
	werr := col.wait(ctx, ch, time.Minute, time.Time{})
	if profiled != nil {
		if err := <-profiled; err != nil {
			b.logf("profile: %v", err)
		} else {
			b.logf("wrote a CPU profile of qualfile to %s", b.o.Profile)
		}
	}
	mem, _ := processMemory(ch.pid())
	r.MaxSampledRSSMiB = mib(rss.finish())
	r.PeakRSSMiB = mib(mem.HWM)
	up := b.up.counts().sub(before)
	r.UpstreamCalls, r.UpstreamNewConns, r.UpstreamMaxOpen, r.UpstreamTokens, r.UpstreamRefused = up.Calls, up.NewConns, up.MaxOpen, up.Tokens, up.Refused

	s := col.snapshot()
	r.Results, r.Duplicates, r.Statuses = s.distinct, s.dups, s.statuses
	if werr != nil {
		return r, werr
	}
	if up.Refused > 0 {
		return r, fmt.Errorf("%s: %w %d times", pipeline, errUpstreamRefused, up.Refused)
	}
	if s.cpuErr != nil {
		return r, fmt.Errorf("CPU of %s: %w", ch.name, s.cpuErr)
	}
	window := s.last.at.Sub(s.first.at)
	filings := float64(n - 1) // the window holds n-1 completions after the first
	r.WindowSeconds = window.Seconds()
	if window > 0 {
		r.FilingsPerSec = filings / window.Seconds()
	}
	r.PipelineCPU = (s.last.pipeline - s.first.pipeline).Seconds() / filings * 1000
	r.DriverCPU = (s.last.driver - s.first.driver).Seconds() / filings * 1000
	r.AllCPU = r.PipelineCPU + r.DriverCPU
	return r, checkStatuses(pipeline, s.statuses)
}

// checkStatuses requires every result of qualfile, plain and Watermill to
// be "succeeded" (raw's notices say "acked").
func checkStatuses(pipeline string, statuses map[string]int) error {
	want := string(messages.StatusSucceeded)
	if pipeline == pipelineRaw {
		want = "acked"
	}
	for st, n := range statuses {
		if st != want {
			return fmt.Errorf("%s: %d results %q, want every one %q (all: %v)", pipeline, n, st, want, statuses)
		}
	}
	return nil
}

// latencyRun is one pipeline at a fixed offered rate.
type latencyRun struct {
	Pipeline     string         `json:"pipeline"`
	Repeat       int            `json:"repeat"`
	Prefix       string         `json:"prefix"`
	OfferedRate  float64        `json:"offered_per_second"`
	AchievedRate float64        `json:"achieved_per_second"`
	Published    int            `json:"published"`
	WarmUp       int            `json:"warm_up"`
	Results      int            `json:"results"`
	Statuses     map[string]int `json:"statuses"`
	P50ms        float64        `json:"p50_ms"`
	P99ms        float64        `json:"p99_ms"`
	MaxMs        float64        `json:"max_ms"`
	Error        string         `json:"error,omitempty"`
}

// latencyWarmUp is how long the offered rate runs before latencies count.
const latencyWarmUp = 500 * time.Millisecond

// latency starts a pipeline, offers it rate requests per second for
// b.o.LatencyFor (after a warm-up), records each request's publish time and
// measures publish → result.
func (b *bench) latency(ctx context.Context, pipeline string, repeat int, rate float64) (latencyRun, error) {
	prefix := b.nextPrefix(pipeline)
	warm := max(1, int(rate*latencyWarmUp.Seconds()))
	n := warm + max(1, int(rate*b.o.LatencyFor.Seconds()))
	r := latencyRun{Pipeline: pipeline, Repeat: repeat, Prefix: prefix, OfferedRate: rate, Published: n, WarmUp: warm}
	defer b.deleteStreams(ctx, prefix)
	if err := b.prepareStreams(ctx, pipeline, prefix); err != nil {
		return r, err
	}
	ch, err := b.startPipeline(ctx, pipeline, prefix, b.o.Concurrency)
	if err != nil {
		return r, err
	}
	defer ch.stop(10 * time.Second)
	at := make([]atomic.Int64, n)
	col, err := b.collect(prefix, n, at, warm)
	if err != nil {
		return r, err
	}
	defer col.close()
	if err := b.publish(ctx, prefix, 0, n, at, rate); err != nil {
		return r, err
	}
	werr := col.wait(ctx, ch, time.Minute, time.Time{})
	s := col.snapshot()
	r.Results, r.Statuses = s.distinct, s.statuses
	if werr != nil {
		return r, werr
	}
	measuredFrom := time.Unix(0, at[warm].Load())
	if span := s.last.at.Sub(measuredFrom); span > 0 {
		r.AchievedRate = float64(n-warm) / span.Seconds()
	}
	slices.Sort(s.lat)
	r.P50ms, r.P99ms = ms(quantile(s.lat, 0.50)), ms(quantile(s.lat, 0.99))
	if len(s.lat) > 0 {
		r.MaxMs = ms(s.lat[len(s.lat)-1])
	}
	return r, checkStatuses(pipeline, s.statuses)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q * float64(len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// sweepPoint is qualfile at one concurrency with a 100 ms upstream.
type sweepPoint struct {
	Concurrency   int     `json:"concurrency"`
	FetchBatch    int     `json:"fetch_batch"`
	MaxAckPending int     `json:"max_ack_pending"`
	Requests      int     `json:"requests"`
	FilingsPerSec float64 `json:"filings_per_second"`
	Bound         float64 `json:"bound_per_second"`
	OfBound       float64 `json:"throughput_of_bound"`
	PipelineCPU   float64 `json:"pipeline_cpu_s_per_1k"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
	NewConns      int64   `json:"upstream_new_connections"`
	MaxOpen       int64   `json:"upstream_max_open_connections"`
	Error         string  `json:"error,omitempty"`
}

// sweep measures qualfile at concurrency c with the upstream at 100 ms.
func (b *bench) sweep(ctx context.Context, c int) (sweepPoint, error) {
	s := settingsFor(c)
	p := sweepPoint{Concurrency: c, FetchBatch: s.fetchBatch, MaxAckPending: s.maxAckPending,
		Requests: c * b.o.SweepRounds, Bound: float64(c) / sweepLatency.Seconds()}
	b.up.setLatency(sweepLatency)
	defer b.up.setLatency(b.o.UpstreamLatency)
	r, err := b.drain(ctx, pipelineQualfile, 0, p.Requests, c)
	p.FilingsPerSec, p.PipelineCPU, p.PeakRSSMiB, p.NewConns, p.MaxOpen = r.FilingsPerSec, r.PipelineCPU, r.PeakRSSMiB, r.UpstreamNewConns, r.UpstreamMaxOpen
	p.OfBound = p.FilingsPerSec / p.Bound
	return p, err
}

// backlogRun is qualfile started on a deep backlog.
type backlogRun struct {
	Backlog         int            `json:"backlog"`
	DrainLimitSec   float64        `json:"drain_limit_seconds"`
	PublishSeconds  float64        `json:"publish_seconds"`
	Drained         int            `json:"drained"`
	DrainSeconds    float64        `json:"drain_seconds"`
	FilingsPerSec   float64        `json:"filings_per_second"`
	RSSAtStartMiB   float64        `json:"rss_at_start_mib"`
	MaxRSSMiB       float64        `json:"max_sampled_rss_mib"`
	PeakRSSMiB      float64        `json:"peak_rss_mib"`
	Samples         int64          `json:"rss_samples"`
	Statuses        map[string]int `json:"statuses"`
	CompletedBefore bool           `json:"completed_before_limit"`
	Error           string         `json:"error,omitempty"`
}

// backlog publishes n requests, starts qualfile and samples its RSS every
// 250 ms while it drains for at most limit (it need not finish).
func (b *bench) backlog(ctx context.Context, n int, limit time.Duration) (backlogRun, error) {
	prefix := b.nextPrefix(pipelineQualfile)
	r := backlogRun{Backlog: n, DrainLimitSec: limit.Seconds()}
	defer b.deleteStreams(ctx, prefix)
	if err := b.prepareStreams(ctx, pipelineQualfile, prefix); err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := b.publish(ctx, prefix, 0, n, nil, 0); err != nil {
		return r, err
	}
	r.PublishSeconds = time.Since(t0).Seconds()
	col, err := b.collect(prefix, n, nil, 0)
	if err != nil {
		return r, err
	}
	defer col.close()
	ch, err := b.startQualfile(ctx, prefix, b.o.Concurrency)
	if err != nil {
		return r, err
	}
	defer ch.stop(10 * time.Second)
	col.pid.Store(int64(ch.pid()))
	ready := time.Now()
	if m, err := processMemory(ch.pid()); err == nil {
		r.RSSAtStartMiB = mib(m.RSS)
	}
	rss := sampleRSS(ch.pid(), 250*time.Millisecond)
	werr := col.wait(ctx, ch, time.Minute, ready.Add(limit))
	mem, _ := processMemory(ch.pid())
	r.MaxRSSMiB, r.PeakRSSMiB, r.Samples = mib(rss.finish()), mib(mem.HWM), rss.samples.Load()
	s := col.snapshot()
	r.Drained, r.Statuses = s.distinct, s.statuses
	r.DrainSeconds = time.Since(ready).Seconds()
	r.CompletedBefore = werr == nil
	if r.CompletedBefore {
		r.DrainSeconds = s.last.at.Sub(ready).Seconds()
	}
	if r.DrainSeconds > 0 {
		r.FilingsPerSec = float64(r.Drained) / r.DrainSeconds
	}
	if werr != nil && !errors.Is(werr, errDeadline) {
		return r, werr
	}
	if r.Drained == 0 {
		return r, fmt.Errorf("backlog %d: nothing drained within %s", n, limit)
	}
	return r, checkStatuses(pipelineQualfile, s.statuses)
}
