package filingtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// Point is an effect of the pipeline where a fault can be injected.
type Point string

// The effect points, as the wrappers see them.
const (
	PointClaim        Point = "ledger.claim"
	PointRead         Point = "ledger.read"
	PointWriteCalling Point = "ledger.write.calling"
	PointWriteClaimed Point = "ledger.write.claimed"
	PointWriteDone    Point = "ledger.write.done"
	PointCall         Point = "upstream.call"
	PointAudit        Point = "publish.audit"
	PointResult       Point = "publish.result"
	PointDead         Point = "publish.dead"
	PointSettle       Point = "settle"
)

// Points lists every effect point.
var Points = []Point{PointClaim, PointRead, PointWriteCalling, PointWriteClaimed, PointWriteDone, PointCall, PointAudit, PointResult, PointDead, PointSettle}

// Fault is what happens at a point.
type Fault string

// The faults.
const (
	FaultBefore      Fault = "fail-before"  // fails without taking effect
	FaultAfter       Fault = "fail-after"   // takes effect, then fails: the reply was lost
	FaultHang        Fault = "hang"         // hangs past the caller's deadline, without effect
	FaultCrashBefore Fault = "crash-before" // the process dies just before the effect
	FaultCrashAfter  Fault = "crash-after"  // the process dies just after it
)

// FaultKinds lists every fault.
var FaultKinds = []Fault{FaultBefore, FaultAfter, FaultHang, FaultCrashBefore, FaultCrashAfter}

// Errors the wrappers return.
var (
	ErrInjected  = errors.New("filingtest: injected broker failure")
	ErrLostReply = errors.New("filingtest: injected failure after the effect (reply lost)")
	ErrCrashed   = errors.New("filingtest: this process has crashed")
)

// Injector fires one fault, at the first effect of its point. Setup
// faults, each also fired once at its point, can bring the pipeline there
// (a lost reply that makes it read the ledger, say).
type Injector struct {
	Point Point
	Fault Fault
	Setup []Shot
	mu    sync.Mutex
	fired bool
}

// Shot is one fault at one point.
type Shot struct {
	Point Point
	Fault Fault
	fired bool
}

// Fired reports whether the fault was injected.
func (in *Injector) Fired() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.fired
}

func (in *Injector) at(p Point) (Fault, bool) {
	if in == nil {
		return "", false
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for i := range in.Setup {
		if s := &in.Setup[i]; !s.fired && s.Point == p {
			s.fired = true
			return s.Fault, true
		}
	}
	if in.fired || p != in.Point {
		return "", false
	}
	in.fired = true
	return in.Fault, true
}

// Faults wraps one process's effects (one incarnation of a replica): the
// Injector is shared by the incarnations of a test, so that its fault
// fires once; after a crash this incarnation's effects do nothing and fail,
// and its settles are dropped, as a dead process's would be.
type Faults struct {
	In *Injector
	// OnCrash is called once when this incarnation crashes.
	OnCrash func()
	// OnSettle is told of every terminal settle (ack or term) before it is
	// sent, for checks of what must be stored by then.
	OnSettle func(msg jetstream.Msg, action string)
	// Stored records what landed: results and dead letters by request id.
	Stored *Stored
	// DropHeartbeats drops every InProgress, as a lost connection would.
	DropHeartbeats bool
	// AsyncTimeout bounds each asynchronous publish, which the wrapper
	// performs before it returns (default 2s).
	AsyncTimeout time.Duration

	dead      atomic.Bool
	cut       atomic.Bool
	crashOnce sync.Once
}

func (f *Faults) asyncTimeout() time.Duration {
	if f.AsyncTimeout > 0 {
		return f.AsyncTimeout
	}
	return 2 * time.Second
}

// Cut cuts this process off from the broker (a partition) until Heal:
// every effect on the broker fails without taking effect, and so does the
// heartbeat. Upstream calls still go through.
func (f *Faults) Cut() { f.cut.Store(true) }

// Heal ends a Cut.
func (f *Faults) Heal() { f.cut.Store(false) }

// Stored is what the wrapped publishers stored, by request id.
type Stored struct {
	mu      sync.Mutex
	results map[string]int
	dead    map[string]int
}

// Results is how many results of id were stored.
func (s *Stored) Results(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.results[id]
}

// DeadLetters is how many dead letters of id (or "seq:N") were stored.
func (s *Stored) DeadLetters(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dead[id]
}

func (s *Stored) add(m map[string]int, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m[id]++
}

// NewStored returns an empty record.
func NewStored() *Stored { return &Stored{results: map[string]int{}, dead: map[string]int{}} }

// Dead reports whether this incarnation has crashed.
func (f *Faults) Dead() bool { return f.dead.Load() }

func (f *Faults) crash() {
	f.dead.Store(true)
	f.crashOnce.Do(func() {
		if f.OnCrash != nil {
			go f.OnCrash()
		}
	})
}

// do runs op under the fault of point p, if it fires here.
func (f *Faults) do(ctx context.Context, p Point, op func() error) error {
	if f.dead.Load() {
		return ErrCrashed
	}
	if f.cut.Load() && p != PointCall {
		if ctx != nil {
			<-ctx.Done() // a partition: the request times out
			return fmt.Errorf("filingtest: cut off: %w", ctx.Err())
		}
		return ErrInjected
	}
	fault, ok := f.In.at(p)
	if !ok {
		return op()
	}
	switch fault {
	case FaultBefore:
		return ErrInjected
	case FaultAfter:
		if err := op(); err != nil {
			return err
		}
		return ErrLostReply
	case FaultHang:
		if ctx == nil {
			return ErrInjected
		}
		<-ctx.Done()
		return fmt.Errorf("filingtest: hung: %w", ctx.Err())
	case FaultCrashBefore:
		f.crash()
		return ErrCrashed
	default: // FaultCrashAfter
		_ = op()
		f.crash()
		return ErrCrashed
	}
}

// Ledger wraps a ledger.
func (f *Faults) Ledger(l filing.Ledger) filing.Ledger { return &faultLedger{f: f, l: l} }

type faultLedger struct {
	f *Faults
	l filing.Ledger
}

func writePoint(s ledger.State) Point {
	switch s {
	case ledger.StateCalling:
		return PointWriteCalling
	case ledger.StateClaimed:
		return PointWriteClaimed
	}
	return PointWriteDone
}

func (w *faultLedger) ClaimEntry(ctx context.Context, e ledger.Entry) (out ledger.Entry, created bool, err error) {
	err = w.f.do(ctx, PointClaim, func() (err error) { out, created, err = w.l.ClaimEntry(ctx, e); return err })
	return out, created, err
}

func (w *faultLedger) Create(ctx context.Context, e ledger.Entry) (out ledger.Entry, err error) {
	err = w.f.do(ctx, writePoint(e.State), func() (err error) { out, err = w.l.Create(ctx, e); return err })
	return out, err
}

func (w *faultLedger) Put(ctx context.Context, prev, next ledger.Entry) (out ledger.Entry, err error) {
	err = w.f.do(ctx, writePoint(next.State), func() (err error) { out, err = w.l.Put(ctx, prev, next); return err })
	return out, err
}

func (w *faultLedger) Get(ctx context.Context, tenant, id string) (out ledger.Entry, err error) {
	err = w.f.do(ctx, PointRead, func() (err error) { out, err = w.l.Get(ctx, tenant, id); return err })
	return out, err
}

// Publisher wraps the JetStream publisher.
func (f *Faults) Publisher(p filing.Publisher) filing.Publisher { return &faultPublisher{f: f, p: p} }

type faultPublisher struct {
	f *Faults
	p filing.Publisher
}

func (w *faultPublisher) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (ack *jetstream.PubAck, err error) {
	point := PointAudit
	switch {
	case strings.Contains(m.Subject, ".result."):
		point = PointResult
	case strings.Contains(m.Subject, ".dead."):
		point = PointDead
	}
	err = w.f.do(ctx, point, func() (err error) {
		if ack, err = w.p.PublishMsg(ctx, m, opts...); err == nil && w.f.Stored != nil {
			switch point {
			case PointResult:
				var r messages.Result
				if json.Unmarshal(m.Data, &r) == nil {
					w.f.Stored.add(w.f.Stored.results, r.RequestID)
				}
			case PointDead:
				id := m.Header.Get(messages.HeaderRequestID)
				if id == "" {
					id = "seq:" + m.Header.Get(messages.HeaderOrigSequence)
				}
				w.f.Stored.add(w.f.Stored.dead, id)
			}
		}
		return err
	})
	return ack, err
}

// PublishMsgAsync publishes m as PublishMsg does, faults included, before
// it returns (so that the order of messages is kept), bounded by
// AsyncTimeout; the future it returns is already resolved.
func (w *faultPublisher) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	ctx, cancel := context.WithTimeout(context.Background(), w.f.asyncTimeout())
	defer cancel()
	ack, err := w.PublishMsg(ctx, m, opts...)
	f := &resolved{msg: m, ok: make(chan *jetstream.PubAck, 1), err: make(chan error, 1)}
	if err != nil {
		f.err <- err
	} else {
		f.ok <- ack
	}
	return f, nil
}

// resolved is a jetstream.PubAckFuture whose answer is in.
type resolved struct {
	msg *nats.Msg
	ok  chan *jetstream.PubAck
	err chan error
}

func (f *resolved) Ok() <-chan *jetstream.PubAck { return f.ok }
func (f *resolved) Err() <-chan error            { return f.err }
func (f *resolved) Msg() *nats.Msg               { return f.msg }

// Dispatcher wraps the upstream: fail-before is a connection refused (not
// sent), fail-after an answer lost after the vendor got the call (for a
// create call the outcome is ambiguous), hang a connect that hangs until
// the deadline.
func (f *Faults) Dispatcher(d filing.Dispatcher) filing.Dispatcher {
	return &faultDispatcher{f: f, d: d}
}

type faultDispatcher struct {
	f *Faults
	d filing.Dispatcher
}

func (w *faultDispatcher) Dispatch(ctx context.Context, req *messages.Request) (out dispatch.Outcome, err error) {
	var inner error
	err = w.f.do(ctx, PointCall, func() error { out, inner = w.d.Dispatch(ctx, req); return nil })
	switch {
	case err == nil:
		return out, inner
	case errors.Is(err, ErrInjected):
		return dispatch.Outcome{}, fmt.Errorf("dial: connection refused: %w", retry.ErrTransient)
	case errors.Is(err, ErrLostReply):
		return dispatch.Outcome{}, AnswerLost(req.API)
	}
	return dispatch.Outcome{}, err
}

// AnswerLost is the error of a call the vendor received whose answer never
// came back, as the clients report it.
func AnswerLost(api messages.API) error {
	err := fmt.Errorf("read: connection reset by peer: %w", errors.Join(retry.ErrTransient, retry.ErrAmbiguous))
	if !api.Resendable() {
		return &dispatch.AmbiguousError{API: api, Err: err}
	}
	return err
}

// Msg wraps a delivery: its settles and its heartbeat.
func (f *Faults) Msg(m jetstream.Msg) jetstream.Msg { return &faultMsg{Msg: m, f: f} }

type faultMsg struct {
	jetstream.Msg
	f *Faults
}

func (w *faultMsg) settle(action string, op func() error) error {
	if !w.f.dead.Load() && action != "nak" && w.f.OnSettle != nil {
		w.f.OnSettle(w.Msg, action)
	}
	return w.f.do(nil, PointSettle, op)
}

func (w *faultMsg) DoubleAck(ctx context.Context) error {
	return w.settle("ack", func() error { return w.Msg.DoubleAck(ctx) })
}

func (w *faultMsg) NakWithDelay(d time.Duration) error {
	return w.settle("nak", func() error { return w.Msg.NakWithDelay(d) })
}

// InProgress is the heartbeat: a dead or cut-off process sends none.
func (w *faultMsg) InProgress() error {
	if w.f.dead.Load() || w.f.cut.Load() || w.f.DropHeartbeats {
		return ErrCrashed
	}
	return w.Msg.InProgress()
}

func (w *faultMsg) TermWithReason(reason string) error {
	return w.settle("term", func() error { return w.Msg.TermWithReason(reason) })
}
