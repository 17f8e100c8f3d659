package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// Ledger is what the service needs of the ledger (*ledger.Ledger).
type Ledger interface {
	Get(ctx context.Context, tenant, id string) (ledger.Entry, error)
	Put(ctx context.Context, prev, next ledger.Entry) (ledger.Entry, error)
}

// Objects holds the bodies of dead letters too big for a message
// (jetstream.ObjectStore).
type Objects interface {
	GetBytes(ctx context.Context, name string, opts ...jetstream.GetObjectOpt) ([]byte, error)
	Delete(ctx context.Context, name string) error
}

// Recorder publishes audit events and results as the pipeline does
// (*filing.Processor).
type Recorder interface {
	Publish(ctx context.Context, evs []messages.AuditEvent, res *messages.Result) error
}

// Requests reads the request stream (jetstream.Stream): an outcome is
// amended only once the message that recorded it is settled, its events
// and result out.
type Requests interface {
	GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error)
}

// Config configures the service.
type Config struct {
	Subjects messages.Subjects
	JS       jetstream.JetStream
	Ledger   Ledger
	Requests Requests
	Objects  Objects // nil: no dead-letter body is kept outside its letter
	Recorder Recorder
	// ReplyTo is the prefix an order's reply subject must start with: the
	// operators' inbox (roles.Inbox). The consumer answers with its own
	// rights, so an order that names another reply subject is not served.
	ReplyTo string
	// Tenants names the tenant of each account (filing.Config.Tenants): a
	// letter whose request would be refused its account is not replayed.
	Tenants map[string]string
	// Timeout bounds the carrying out of one order (default 30s).
	Timeout time.Duration
	Now     func() time.Time
	Log     *zap.Logger
}

// Service carries out operators' orders: those asked on the control
// subjects, and those the console gives for its signed-in operators (Do).
type Service struct {
	cfg Config

	mu      sync.Mutex
	stopped bool
	orders  sync.WaitGroup // being carried out
	subs    []*nats.Subscription
}

// Reply headers: an order refused says why in them, with an empty or
// partial report as the body.
const (
	HeaderErrorCode = "Qualfile-Control-Error-Code"
	HeaderError     = "Qualfile-Control-Error"
)

// Start serves the actions on nc, in a queue group every replica shares,
// until Stop.
func Start(nc *nats.Conn, cfg Config) (*Service, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	if cfg.ReplyTo == "" || cfg.Requests == nil {
		return nil, errors.New("control: Config.ReplyTo and Config.Requests are required")
	}
	s := &Service{cfg: cfg}
	for _, a := range Actions {
		sub, err := nc.QueueSubscribe(Subject(cfg.Subjects, "*", a), "qualfile-control", s.handle)
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.subs = append(s.subs, sub)
	}
	return s, nil
}

// Stop stops serving and waits for the orders being carried out.
func (s *Service) Stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.orders.Wait()
}

// begin counts an order in, unless the service has stopped.
func (s *Service) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.orders.Add(1)
	return true
}

// handle answers one order: its report, or a refusal with a code.
func (s *Service) handle(m *nats.Msg) {
	if !s.begin() {
		return
	}
	defer s.orders.Done()
	if !strings.HasPrefix(m.Reply, s.cfg.ReplyTo+".") {
		// Answered with the consumer's rights: only into the operators'
		// inbox, never into a subject an order chose.
		s.cfg.Log.Warn("an order whose reply subject is not the operators' inbox is not served",
			zap.String("subject", messages.Truncate(m.Subject, 200)), zap.String("reply", messages.Truncate(m.Reply, 200)))
		return
	}
	op, a := s.parse(m.Subject)
	var o Order
	err := json.Unmarshal(m.Data, &o)
	switch {
	case !ValidOperator(op):
		err = fmt.Errorf("%w: the operator's name in the subject must be one token of lower-case letters, digits and _", ErrInvalidOrder)
	case err != nil:
		err = fmt.Errorf("%w: not a JSON order: %v", ErrInvalidOrder, err)
	default:
		err = o.Validate(a)
	}
	var rep Report
	if err == nil {
		rep, err = s.carry(op, a, o)
	}
	reply := nats.NewMsg(m.Reply)
	reply.Data, _ = json.Marshal(rep) // what was done, before any failure
	switch {
	case err == nil:
	case errors.Is(err, ErrInvalidOrder):
		reply.Header.Set(HeaderErrorCode, codeInvalid)
	case errors.Is(err, ErrNoMatch):
		reply.Header.Set(HeaderErrorCode, codeNoMatch)
	default:
		s.cfg.Log.Warn("an operator's order could not be carried out", zap.String("operator", op), zap.String("action", string(a)), zap.Error(err))
		reply.Header.Set(HeaderErrorCode, codeUnavailable)
	}
	if err != nil {
		reply.Header.Set(HeaderError, messages.HeaderValue(err.Error(), 2000))
	}
	if err := m.RespondMsg(reply); err != nil {
		s.cfg.Log.Warn("could not answer an operator's order", zap.Error(err))
	}
}

// parse reads the operator and the action from a control subject.
func (s *Service) parse(subject string) (operator string, a Action) {
	rest, _ := strings.CutPrefix(subject, s.cfg.Subjects.Root()+".control.")
	operator, action, _ := strings.Cut(rest, ".")
	return operator, Action(action)
}

// Give carries out operator's order a, given other than on a control
// subject (the console, for an operator signed in to it): checked as one
// asked there is, and refused once the service has stopped.
func (s *Service) Give(operator string, a Action, o Order) (Report, error) {
	if !ValidOperator(operator) {
		return Report{}, fmt.Errorf("%w: operator %q: lower-case letters, digits and _, at most 64", ErrInvalidOrder, operator)
	}
	if err := o.Validate(a); err != nil {
		return Report{}, err
	}
	if !s.begin() {
		return Report{}, fmt.Errorf("%w: the consumer is stopping", ErrUnavailable)
	}
	defer s.orders.Done()
	return s.carry(operator, a, o)
}

// carry carries out a valid order within the service's timeout.
func (s *Service) carry(operator string, a Action, o Order) (Report, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	return s.Do(ctx, operator, a, o)
}

// Do carries out a valid order of operator.
func (s *Service) Do(ctx context.Context, operator string, a Action, o Order) (Report, error) {
	if a == ActionResolve {
		return s.resolve(ctx, operator, o)
	}
	letters, err := s.letters(ctx, o)
	if err != nil {
		return Report{}, err
	}
	var rep Report
	for _, d := range letters {
		var it Item
		if a == ActionReplay {
			it, err = s.replay(ctx, operator, o, d)
		} else {
			it, err = s.remove(ctx, operator, o.Reason, d)
		}
		rep.Items = append(rep.Items, it)
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// letters are the dead letters an order names: one read for a sequence,
// the stream read through for an id or all.
func (s *Service) letters(ctx context.Context, o Order) ([]operator.DeadLetter, error) {
	if o.Seq != 0 {
		stream, err := s.cfg.JS.Stream(ctx, queue.StreamNames(s.cfg.Subjects).Dead)
		var m *jetstream.RawStreamMsg
		if err == nil {
			m, err = stream.GetMsg(ctx, o.Seq)
		}
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return nil, fmt.Errorf("%w: no dead letter %s", ErrNoMatch, describe(o))
		case err != nil:
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
		return []operator.DeadLetter{operator.Letter(s.cfg.Subjects, m)}, nil
	}
	dead, err := operator.ReadDead(ctx, s.cfg.JS, s.cfg.Subjects)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var out []operator.DeadLetter
	for _, d := range dead {
		if o.All || (o.Seq != 0 && d.Sequence == o.Seq) || (o.RequestID != "" && d.RequestID == o.RequestID && d.Tenant == o.Tenant) {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no dead letter %s", ErrNoMatch, describe(o))
	}
	return out, nil
}

func describe(o Order) string {
	switch {
	case o.Seq != 0:
		return fmt.Sprintf("at seq %d", o.Seq)
	case o.RequestID != "" && o.Tenant != "":
		return fmt.Sprintf("of request %q of tenant %q", o.RequestID, o.Tenant)
	case o.RequestID != "":
		return fmt.Sprintf("of request %q", o.RequestID)
	}
	return "at all"
}

// remove deletes a dead letter and the body kept for it. Its event goes
// out first, with an identity of the letter's own, so that an order given
// again after a failure records the removal once.
func (s *Service) remove(ctx context.Context, operator, reason string, d operator.DeadLetter) (Item, error) {
	it := Item{Seq: d.Sequence, RequestID: d.RequestID, Tenant: d.Tenant}
	ev := s.event(d, messages.EventDeadRemoved, operator, reason, fmt.Sprintf("dead letter %d removed (%s)", d.Sequence, messages.Truncate(d.Reason, 200)))
	if err := s.note(ctx, d.Tenant, d.RequestID, ev); err != nil {
		return it, err
	}
	if err := s.dropLetter(ctx, d); err != nil {
		return it, err
	}
	it.Done = "removed"
	return it, nil
}

// dropLetter deletes a dead letter, its body first: once the letter is
// gone, so is the body's name.
func (s *Service) dropLetter(ctx context.Context, d operator.DeadLetter) error {
	if d.BodyObject != "" && s.cfg.Objects != nil {
		if err := s.cfg.Objects.Delete(ctx, d.BodyObject); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			return fmt.Errorf("%w: removing the body %s of dead letter %d (the letter is kept): %w", ErrUnavailable, d.BodyObject, d.Sequence, err)
		}
	}
	stream, err := s.cfg.JS.Stream(ctx, queue.StreamNames(s.cfg.Subjects).Dead)
	if err == nil {
		err = stream.DeleteMsg(ctx, d.Sequence)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("%w: removing dead letter %d: %w", ErrUnavailable, d.Sequence, err)
	}
	return nil
}

// event is an operator's action on dead letter d. Its identity is the
// letter's and the action's, so that an order given again records it
// once.
func (s *Service) event(d operator.DeadLetter, event, operator, reason, message string) messages.AuditEvent {
	return messages.AuditEvent{ID: fmt.Sprintf("operator/%s/dead/%d/%s", event, d.Sequence, stamp(d.DeadAt)), RequestID: d.RequestID, Tenant: d.Tenant, API: d.API,
		Event: event, Time: s.cfg.Now().UTC(), Operator: operator, Reason: reason, Message: message}
}

// stamp tells apart two letters at one sequence of a recreated stream.
func stamp(deadAt string) string {
	if t, err := time.Parse(time.RFC3339Nano, deadAt); err == nil {
		return fmt.Sprint(t.UnixNano())
	}
	return "0"
}

// note records ev: in the trail of tenant's request id when its entry
// has an outcome (the outcome stays), otherwise beside the trail.
func (s *Service) note(ctx context.Context, tenant, id string, ev messages.AuditEvent) error {
	if id != "" {
		if _, err := ledger.Key(tenant, id); err == nil {
			e, err := s.cfg.Ledger.Get(ctx, tenant, id)
			switch {
			case err == nil && e.State == ledger.StateDone && e.Result != nil:
				return s.amend(ctx, e, ev, nil)
			case err != nil && !errors.Is(err, ledger.ErrNotFound):
				return fmt.Errorf("%w: ledger: %w", ErrUnavailable, err)
			}
		}
	}
	if err := s.cfg.Recorder.Publish(ctx, []messages.AuditEvent{ev}, nil); err != nil {
		return fmt.Errorf("%w: publishing the %s event: %w", ErrUnavailable, ev.Event, err)
	}
	return nil
}

// amend adds ev to the trail of the done entry e, with res as its new
// outcome when not nil, then publishes ev and res and notes them out. An
// event already in the trail (by its identity) is not added again, only
// published if it is not out yet. Only the outcome of a settled message
// is amended: its writer published the trail before it settled it, so
// the whole trail is out.
func (s *Service) amend(ctx context.Context, e ledger.Entry, ev messages.AuditEvent, res *messages.Result) error {
	if !hasEvent(e.Trail, ev.ID) {
		if err := s.settled(ctx, e); err != nil {
			return err
		}
		next := e
		next.Emitted = len(e.Trail)
		ev.Seq = len(e.Trail) + 1
		next.Trail = append(append([]messages.AuditEvent(nil), e.Trail...), ev)
		if res != nil {
			next.Result = res
		}
		next.UpdatedAt = time.Time{}
		got, err := s.cfg.Ledger.Put(ctx, e, next)
		if errors.Is(err, ledger.ErrConflict) {
			return fmt.Errorf("%w: the filing changed while this was recorded; give the order again", ErrUnavailable)
		}
		if err != nil {
			return fmt.Errorf("%w: ledger: %w", ErrUnavailable, err)
		}
		e = got
	}
	return s.catchUp(ctx, e)
}

// catchUp publishes what e's trail holds beyond what is out, and its
// result when that is among it, then notes them out.
func (s *Service) catchUp(ctx context.Context, e ledger.Entry) error {
	if e.Emitted >= len(e.Trail) {
		return nil
	}
	var res *messages.Result
	for _, ev := range e.Trail[e.Emitted:] {
		if ev.Event == messages.EventResolved && e.Result != nil && e.Result.Resolution != nil {
			res = e.Result // the resolution's result goes out after its event
		}
	}
	if err := s.cfg.Recorder.Publish(ctx, e.Trail[e.Emitted:], res); err != nil {
		return fmt.Errorf("%w: publishing the trail: %w", ErrUnavailable, err)
	}
	next := e
	next.Emitted, next.UpdatedAt = len(e.Trail), time.Time{}
	if _, err := s.cfg.Ledger.Put(ctx, e, next); err != nil && !errors.Is(err, ledger.ErrConflict) {
		return fmt.Errorf("%w: ledger: %w", ErrUnavailable, err)
	}
	return nil
}

// settled reports (nil) whether the message that recorded e is gone from
// the request stream: acked or terminated, after its writer published the
// trail, the result and the dead letter. While it is there, its writer, or
// a redelivery of it, is still putting its outcome out.
func (s *Service) settled(ctx context.Context, e ledger.Entry) error {
	if e.Seq == 0 {
		return nil
	}
	m, err := s.cfg.Requests.GetMsg(ctx, e.Seq)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("%w: the request stream: %w", ErrUnavailable, err)
	}
	var id struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(m.Data, &id) != nil || id.ID != e.RequestID {
		return nil // another request at that sequence: the stream was made anew
	}
	return fmt.Errorf("%w: request %q is still being settled, its outcome going out: give the order again in a moment", ErrUnavailable, e.RequestID)
}

func hasEvent(trail []messages.AuditEvent, id string) bool {
	for _, ev := range trail {
		if ev.ID == id {
			return true
		}
	}
	return false
}
