package filing_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/messages"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/internal/tokenkv"
)

// harness is the whole consumer pipeline on an embedded NATS server and the
// sandbox, without the command's flag and config handling.
type harness struct {
	tb       testing.TB
	js       jetstream.JetStream
	nc       *nats.Conn
	sb       *sandbox.Server
	led      *ledger.Ledger
	subjects messages.Subjects
	streams  queue.Streams
	cons     jetstream.Consumer
	proc     *filing.Processor
	policy   retry.Policy
	grace    time.Duration
}

type harnessOpts struct {
	maxDeliver int
	policy     retry.Policy
	js         jetstream.JetStream
	nc         *nats.Conn
	owner      string
	sb         *sandbox.Server
	wrapLedger func(*ledger.Ledger) interface{ ledgerAPI }
	grace      time.Duration
}

// ledgerAPI is what the processor needs of the ledger.
type ledgerAPI = filing.Ledger

func fastPolicy() retry.Policy {
	return retry.Policy{
		InitialInterval: 5 * time.Millisecond, MaxInterval: 20 * time.Millisecond, MaxElapsedTime: time.Second,
		MaxAttempts: 4, MaxThrottleInterval: 40 * time.Millisecond,
		RedeliveryBase: 50 * time.Millisecond, RedeliveryMax: 200 * time.Millisecond,
	}
}

func newHarness(tb testing.TB, o harnessOpts) *harness {
	tb.Helper()
	if o.js == nil {
		o.js, o.nc, _ = natstest.JetStream(tb)
	}
	if o.maxDeliver == 0 {
		o.maxDeliver = 5
	}
	if o.policy.InitialInterval == 0 {
		o.policy = fastPolicy()
	}
	ctx := context.Background()
	if o.grace == 0 {
		o.grace = 5 * time.Second
	}
	h := &harness{tb: tb, js: o.js, nc: o.nc, subjects: messages.Subjects{Prefix: "filing"}, policy: o.policy, grace: o.grace}
	h.streams = queue.StreamNames(h.subjects)
	if _, err := queue.EnsureStreams(ctx, h.js, queue.StreamsConfig{Subjects: h.subjects}); err != nil {
		tb.Fatal(err)
	}
	cons, err := queue.EnsureConsumer(ctx, h.js, queue.ConsumerConfig{Subjects: h.subjects, AckWait: 5 * time.Second, MaxDeliver: o.maxDeliver, MaxAckPending: 64})
	if err != nil {
		tb.Fatal(err)
	}
	h.cons = cons
	if h.led, err = ledger.Open(ctx, h.js, ledger.Config{}); err != nil {
		tb.Fatal(err)
	}
	tokens, err := tokenkv.Open(ctx, h.js, tokenkv.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	h.sb = o.sb
	if h.sb == nil {
		h.sb = startSandbox(tb)
	}
	if o.owner == "" {
		o.owner = tb.Name()
	}
	accounts, err := dispatch.FromResolved(config.Default().WithSandbox(h.sb.URL(),
		sandbox.DefaultAccessKeyID, sandbox.DefaultSecretAccessKey, sandbox.DefaultAppID, sandbox.DefaultAppSecret), tokens)
	if err != nil {
		tb.Fatal(err)
	}
	disp := dispatch.New(accounts)
	h.proc, err = filing.New(filing.Config{
		Subjects: h.subjects, Policy: o.policy, MaxDeliver: o.maxDeliver, Owner: o.owner, InFlightLease: 5 * time.Second,
	}, disp, h.ledgerFor(o), h.js, h.nc, testLogger(tb), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func startSandbox(tb testing.TB) *sandbox.Server {
	tb.Helper()
	sb, err := sandbox.New(sandbox.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	if err := sb.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = sb.Close() })
	return sb
}

// run starts the consume loop until the test ends (or stop is called).
func (h *harness) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = queue.Consume(ctx, h.cons, func(ctx context.Context, m jetstream.Msg) { h.proc.Handle(ctx, m) }, queue.LoopConfig{Concurrency: 16, AckWait: 5 * time.Second, Grace: h.grace})
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	h.tb.Cleanup(stop)
	return stop
}

// example returns examples/<api>.json with a fresh id.
func example(tb testing.TB, api messages.API, id string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", string(api)+".json"))
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatal(err)
	}
	m["id"], _ = json.Marshal(id)
	out, _ := json.Marshal(m)
	return out
}

func (h *harness) publish(api messages.API, id string, data []byte) {
	h.tb.Helper()
	m := nats.NewMsg(h.subjects.Request(api))
	m.Data = data
	if _, err := h.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(id)); err != nil {
		h.tb.Fatal(err)
	}
}

// results collects results from the durable result stream.
func (h *harness) results(want int, timeout time.Duration) map[string]messages.Result {
	h.tb.Helper()
	got := map[string]messages.Result{}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		got = map[string]messages.Result{}
		for _, m := range h.streamMsgs(h.streams.Results) {
			var r messages.Result
			if err := json.Unmarshal(m.Data, &r); err != nil {
				h.tb.Fatal(err)
			}
			got[r.RequestID] = r
		}
		if len(got) >= want {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.tb.Fatalf("got %d results, want %d: %v", len(got), want, got)
	return nil
}

// streamMsgs reads every message of a stream.
func (h *harness) streamMsgs(name string) []*jetstream.RawStreamMsg {
	h.tb.Helper()
	ctx := context.Background()
	s, err := h.js.Stream(ctx, name)
	if err != nil {
		h.tb.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.tb.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	if info.State.Msgs == 0 {
		return nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			h.tb.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// audit returns the audit events of one request, in order.
func (h *harness) audit(id string) []messages.AuditEvent {
	h.tb.Helper()
	var out []messages.AuditEvent
	for _, m := range h.streamMsgs(h.streams.Audit) {
		var ev messages.AuditEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			h.tb.Fatal(err)
		}
		if ev.RequestID == id {
			out = append(out, ev)
		}
	}
	return out
}

func countEvents(evs []messages.AuditEvent, name string) int {
	n := 0
	for _, ev := range evs {
		if ev.Event == name {
			n++
		}
	}
	return n
}

func (h *harness) ledgerFor(o harnessOpts) filing.Ledger {
	if o.wrapLedger != nil {
		return o.wrapLedger(h.led)
	}
	return h.led
}

// testLogger logs through the test, except in benchmarks.
func testLogger(tb testing.TB) *zap.Logger {
	if _, ok := tb.(*testing.B); ok {
		return zap.NewNop()
	}
	return zaptest.NewLogger(tb)
}
