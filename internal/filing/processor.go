package filing

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/metrics"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// The processor: what it needs of the world (small interfaces, declared
// here where they are used), its configuration and its rules.

// Dispatcher makes one upstream call for a validated request.
type Dispatcher interface {
	Dispatch(ctx context.Context, req *messages.Request) (dispatch.Outcome, error)
}

// Reconciler reads the vendor's records to learn whether a create whose
// answer was lost was filed (*dispatch.Dispatcher).
type Reconciler interface {
	Reconcile(ctx context.Context, req *messages.Request) (dispatch.Finding, error)
}

// Ledger is the idempotency ledger (*ledger.Ledger).
type Ledger interface {
	ClaimEntry(ctx context.Context, e ledger.Entry) (ledger.Entry, bool, error)
	Create(ctx context.Context, e ledger.Entry) (ledger.Entry, error)
	Put(ctx context.Context, prev, next ledger.Entry) (ledger.Entry, error)
	Get(ctx context.Context, tenant, id string) (ledger.Entry, error)
}

// Publisher publishes to JetStream: one message, waiting for the stream's
// ack, or several sent at once (PublishMsgAsync, in order on one
// connection) whose acks are awaited together.
type Publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error)
}

// Requests reads the request stream (jetstream.Stream): a copy of a
// request asks it whether the message whose delivery holds the entry is
// still there (lease.go).
type Requests interface {
	GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error)
}

// Replier sends a result to a request's reply subject over core NATS.
type Replier interface {
	PublishMsg(msg *nats.Msg) error
}

// Objects stores the body of a dead letter too big to travel in it.
type Objects interface {
	PutBytes(ctx context.Context, name string, data []byte) (*jetstream.ObjectInfo, error)
}

// FileStore is one tenant's object store of files too large for a
// request (<PREFIX>_FILES, <PREFIX>_FILES_<TENANT>), and its name, which
// a request's references must give.
type FileStore struct {
	files.Store
	Bucket string
}

// Config configures a Processor.
type Config struct {
	Subjects messages.Subjects
	Policy   retry.Policy
	// Requests is the request stream (required).
	Requests Requests
	// ReplyTo are the subject prefixes a reply_to of the default tenant's
	// requests may start with (default: the submitters' inbox prefix,
	// roles.Inbox); a tenant's must be under its own inbox
	// (roles.TenantInbox). A request with another is rejected.
	ReplyTo []string
	// Tenants names the tenant of each account ("" for the default
	// tenant's). A request is filed only with an account of the tenant
	// whose subject it came on; a default tenant's request may also name an
	// account not configured (which fails as unknown).
	Tenants map[string]string
	// MaxDeliver: a retryable failure on this delivery is dead-lettered.
	MaxDeliver int
	// Owner names this replica in the ledger; unique per process.
	Owner string
	// InFlightLease is how long another replica's "calling" entry must be
	// seen unchanged, on this replica's own clock, before its holder is
	// taken for dead (default 10s). A holder renews its entry every
	// quarter of it while it works (lease.go).
	InFlightLease time.Duration
	// PublishTimeout bounds each publish and ledger operation (default 10s).
	PublishTimeout time.Duration
	// RecordTimeout is how long a replica past its shutdown grace period
	// keeps trying to record what the ledger lacks (a vendor's answer; a
	// call never sent, or answered) before it hands the message back
	// (default 2 min); while it runs, it tries for as long as it lives.
	RecordTimeout time.Duration
	// TroubleTimeout is how long other broker trouble is retried in process
	// before the message is handed back (default 2s).
	TroubleTimeout time.Duration
	// CallTimeout bounds one upstream call (default 1 min); the clients
	// have their own timeouts (10 s by default).
	CallTimeout time.Duration
	// MaxPayload is the server's max_payload (default 1 MiB): a dead letter
	// that would not fit keeps its body in Objects.
	MaxPayload int
	// Objects holds oversized dead-letter bodies; nil drops such a body
	// from its dead letter (keeping its size and digest).
	Objects Objects
	// Files are the object stores of SMS files too large for a message,
	// one per tenant ("" the default tenant's): a tenant's requests fetch
	// files from its own only. A tenant without one refuses every request
	// that references a file.
	Files map[string]FileStore
	// RedactResults redacts the vendor's answer (messages.Redact) in the
	// result, before it is recorded or published.
	RedactResults bool
	// Tracer makes a span of each delivery, with children for the ledger
	// steps, the vendor calls and reads and the publishes; nil traces
	// nothing. Results and audit events carry the delivery's trace context.
	Tracer trace.Tracer
	// Reconcile settles a VMS or SMS create whose answer was lost by
	// reading the vendor's records; without a Reader such a request ends
	// ambiguous, for an operator.
	Reconcile ReconcileConfig
	Now       func() time.Time
}

// ReconcileConfig configures reconciliation (see the README,
// "Reconciliation").
type ReconcileConfig struct {
	// Reader reads the vendor's records; nil turns reconciliation off.
	Reader Reconciler
	// Window is the settling window (default 30s): a record just written
	// may not be listed at once, so Reads reads are spread over it, the
	// last at its end.
	Window time.Duration
	// Reads is the number of answered reads in the window (default 4).
	Reads int
	// KeepAmbiguous: a request whose record is absent after the window
	// ends ambiguous, for an operator, instead of being filed again once.
	KeepAmbiguous bool
}

// Processor handles request messages. It is safe for concurrent use.
type Processor struct {
	cfg     Config
	rules   limits
	disp    Dispatcher
	ledger  Ledger
	js      Publisher
	reply   Replier
	log     *zap.Logger
	metrics *metrics.Metrics
	mem     *memory
	active  atomic.Int64 // handlers running
}

// New returns a Processor.
func New(cfg Config, disp Dispatcher, l Ledger, js Publisher, reply Replier, log *zap.Logger, m *metrics.Metrics) (*Processor, error) {
	if err := cfg.Policy.Validate(); err != nil {
		return nil, err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.PublishTimeout, 10*time.Second)
	def(&cfg.RecordTimeout, 2*time.Minute)
	def(&cfg.TroubleTimeout, 2*time.Second)
	def(&cfg.InFlightLease, 10*time.Second)
	def(&cfg.CallTimeout, time.Minute)
	if cfg.MaxPayload <= 0 {
		cfg.MaxPayload = 1 << 20
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Owner == "" {
		return nil, errors.New("filing: Config.Owner is required")
	}
	if len(cfg.ReplyTo) == 0 {
		cfg.ReplyTo = []string{roles.Inbox(roles.Submitter, cfg.Subjects)}
	}
	if cfg.Requests == nil {
		return nil, errors.New("filing: Config.Requests is required")
	}
	if cfg.Tracer == nil {
		cfg.Tracer = noop.NewTracerProvider().Tracer("")
	}
	rc := cfg.Reconcile
	def(&rc.Window, 30*time.Second)
	if rc.Reads <= 0 {
		rc.Reads = 4
	}
	cfg.Reconcile = rc
	rules := limits{
		maxDeliver:   cfg.MaxDeliver,
		lease:        cfg.InFlightLease,
		recordBudget: cfg.RecordTimeout, troubleBudget: cfg.TroubleTimeout, policy: cfg.Policy, owner: cfg.Owner,
		redactResults: cfg.RedactResults, replyTo: cfg.ReplyTo, tenants: cfg.Tenants, knownTenants: map[string]bool{}, tenantInbox: roles.TenantInboxes(cfg.Subjects),
		reconcile: reconcileRules{on: rc.Reader != nil, window: rc.Window, reads: rc.Reads,
			keepAmbiguous: rc.KeepAmbiguous},
	}
	for _, t := range cfg.Tenants {
		rules.knownTenants[t] = t != ""
	}
	return &Processor{cfg: cfg, rules: rules, disp: disp, ledger: l, js: js, reply: reply, log: log, metrics: m,
		mem: newMemory(max(10*cfg.RecordTimeout, time.Hour))}, nil
}

// Active is the number of deliveries being handled right now, a replica
// still settling what it knows included.
func (p *Processor) Active() int { return int(p.active.Load()) }

// Owner is the replica's name in the ledger.
func (p *Processor) Owner() string { return p.cfg.Owner }
