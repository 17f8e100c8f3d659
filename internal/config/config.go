// Package config is the consumer's configuration: a YAML file, environment
// overrides (QUALFILE_*), defaults that make it run anywhere (an embedded
// NATS server on 127.0.0.1:4222, store under ./data), validation that reports
// every problem at once, and the resolution of account secrets.
//
// Secrets (access keys, app secrets, the NATS password) are never part of
// the YAML: the configuration names an environment variable (*_env) or a
// file (*_file) that holds each one, and a literal secret key such as
// secret_access_key is rejected as an unknown key. Resolved secrets are
// redacted whenever the resolved values are formatted, marshalled or logged.
//
// Durations are Go duration strings ("30s", "2160h"); a bare number is
// rejected.
package config

import (
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// Defaults.
const (
	DefaultStoreDir        = "./data"
	DefaultEmbeddedListen  = "127.0.0.1:4222"
	DefaultSubjectPrefix   = messages.DefaultPrefix
	DefaultReplicas        = 1
	DefaultAuditMaxAge     = 90 * 24 * time.Hour
	DefaultDuplicateWindow = 24 * time.Hour
	DefaultLedgerMaxAge    = ledger.DefaultMaxAge
	DefaultDurable         = "qualfile"
	DefaultConcurrency     = 64
	DefaultMaxDeliver      = 10
	DefaultAckWait         = 60 * time.Second
	DefaultFetchBatch      = 16
	DefaultMaxAckPending   = 1024
	DefaultShutdownGrace   = 30 * time.Second
	DefaultCallTimeout     = time.Minute
	DefaultAdminListen     = "127.0.0.1:9090"
	// EmbeddedURL as nats.url chooses the embedded server.
	EmbeddedURL              = "embedded"
	DefaultLogLevel          = "info"
	DefaultNATSName          = "qualfile"
	DefaultConnectTimeout    = 5 * time.Second
	DefaultReconnectWait     = 2 * time.Second
	DefaultHealthInterval    = 5 * time.Second
	DefaultHealthTimeout     = 2 * time.Second
	DefaultHealthFailures    = 3
	DefaultRegion            = volcengine.DefaultRegion
	DefaultVolcengineTimeout = volcengine.DefaultTimeout
	DefaultDouyinTimeout     = douyin.DefaultTimeout
	DefaultReconcileWindow   = 30 * time.Second
	DefaultReconcileReads    = 4
	DefaultReconcileSkew     = 2 * time.Minute
	DefaultMinRate           = 0.2
	DefaultRecoverEvery      = 10 * time.Second
	DefaultBreakerFailures   = 5
	DefaultBreakerOpenFor    = 15 * time.Second
	DefaultBreakerProbes     = 1
	DefaultFilesMaxAge       = 7 * 24 * time.Hour
)

// Config is the consumer's configuration. Its YAML keys are given in the
// field tags; every field is exported so that the caller can apply
// command-line flags after Load and call Validate again.
type Config struct {
	NATS     NATSConfig     `yaml:"nats"`
	Embedded EmbeddedConfig `yaml:"embedded"`
	Subjects SubjectsConfig `yaml:"subjects"`
	Streams  StreamsConfig  `yaml:"streams"`
	Ledger   LedgerConfig   `yaml:"ledger"`
	Consumer ConsumerConfig `yaml:"consumer"`
	// Reconcile settles a VMS or SMS create whose answer was lost.
	Reconcile ReconcileConfig `yaml:"reconcile"`
	// Limits protect the vendors: a circuit breaker and a rate limit per
	// vendor account.
	Limits LimitsConfig `yaml:"limits"`
	// Files is the object store of SMS files too large for a message.
	Files    FilesConfig        `yaml:"files"`
	Admin    AdminConfig        `yaml:"admin"`
	Log      LogConfig          `yaml:"log"`
	Accounts map[string]Account `yaml:"accounts"`
}

// NATSConfig is the connection to the NATS servers.
type NATSConfig struct {
	// URL is the server URL list (comma separated, nats:// tls:// ws://
	// wss://). Empty starts an embedded server. It must not contain
	// credentials.
	URL string `yaml:"url"`
	// CredsFile is a user credentials file (JWT and nkey seed).
	CredsFile string `yaml:"creds_file"`
	// NkeyFile is a file holding a user nkey seed.
	NkeyFile string `yaml:"nkey_file"`
	// User is the user name; the password is read from the environment
	// variable named by PasswordEnv.
	User        string `yaml:"user"`
	PasswordEnv string `yaml:"password_env"`
	// TLS configures a TLS connection.
	TLS TLSConfig `yaml:"tls"`
	// Name is the connection name shown by the server; default "qualfile".
	Name string `yaml:"name"`
	// ConnectTimeout bounds one connection attempt; default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// ReconnectWait is the wait between reconnect attempts; default 2s.
	// The client reconnects forever.
	ReconnectWait time.Duration `yaml:"reconnect_wait"`
	// Health is the JetStream health watch behind /readyz.
	Health HealthConfig `yaml:"health"`
}

// HealthConfig is the JetStream health watch: every Interval the consumer
// writes to a small KV bucket (a write needs a stream leader with a
// majority behind it), and after Failures consecutive failures it reports
// not ready in /readyz and moves its connection to another server.
type HealthConfig struct {
	// Interval is the time between probes; default 5s.
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds one probe; default 2s.
	Timeout time.Duration `yaml:"timeout"`
	// Failures is the number of consecutive failed probes before the
	// consumer is not ready and reconnects elsewhere; default 3.
	Failures int `yaml:"failures"`
}

// TLSConfig is the client side of a TLS connection to NATS. Server
// verification cannot be switched off.
type TLSConfig struct {
	// CAFile holds the PEM roots that verify the server; the system roots
	// when empty.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate (both or neither).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// enabled reports whether any TLS setting is given.
func (t TLSConfig) enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != ""
}

// EmbeddedConfig is the NATS server started when NATS.URL is empty.
type EmbeddedConfig struct {
	// StoreDir is the JetStream store directory; default "./data".
	StoreDir string `yaml:"store_dir"`
	// Listen is the client address; default "127.0.0.1:4222".
	Listen string `yaml:"listen"`
}

// SubjectsConfig names the subjects.
type SubjectsConfig struct {
	// Prefix is the first subject token(s); default "filing". Stream names
	// are derived from it (FILING_REQUESTS, …).
	Prefix string `yaml:"prefix"`
}

// StreamsConfig configures the JetStream streams.
type StreamsConfig struct {
	// Replicas of every stream, the ledger and the token store: 1 on one
	// server, 3 on a cluster; default 1.
	Replicas int `yaml:"replicas"`
	// AuditMaxAge is how long audit events are kept; default 2160h (90
	// days).
	AuditMaxAge time.Duration `yaml:"audit_max_age"`
	// DuplicateWindow is the request stream's duplicate window; default
	// 24h.
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// ResultsMaxAge is how long results are kept; 0 (default) is forever.
	ResultsMaxAge time.Duration `yaml:"results_max_age"`
	// RedactResults redacts the vendor's answer in every result (and in
	// the ledger) as audit events are redacted: ID and phone numbers
	// masked, names replaced. Off by default: the publisher then gets the
	// vendor's answer as it came.
	RedactResults bool `yaml:"redact_results"`
	// DeadMaxAge is how long dead letters are kept; 0 (default) is
	// forever.
	DeadMaxAge time.Duration `yaml:"dead_max_age"`
}

// LedgerConfig configures the idempotency ledger (KV bucket
// <PREFIX>_LEDGER).
type LedgerConfig struct {
	// MaxAge is how long a request's entry is kept after its last change;
	// default 720h (30 days). It must exceed streams.duplicate_window. An id
	// published again after its entry expired is a new request and is
	// filed again.
	MaxAge time.Duration `yaml:"max_age"`
}

// ConsumerConfig configures the durable pull consumer and the work loop.
type ConsumerConfig struct {
	// Durable is the consumer name shared by all replicas; default
	// "qualfile".
	Durable string `yaml:"durable"`
	// Concurrency is the number of requests handled at once (also the
	// consumer's max ack pending); default 64.
	Concurrency int `yaml:"concurrency"`
	// MaxDeliver is the number of deliveries before a request goes to the
	// dead letters; default 10.
	MaxDeliver int `yaml:"max_deliver"`
	// AckWait is the ack deadline of one delivery; default 60s.
	AckWait time.Duration `yaml:"ack_wait"`
	// FetchBatch is the most messages asked for per pull; default 16.
	FetchBatch int `yaml:"fetch_batch"`
	// MaxAckPending caps the unacknowledged messages of the shared durable
	// consumer across ALL replicas (each replica holds at most its
	// concurrency); default 1024, room for 16 replicas of concurrency 64.
	MaxAckPending int `yaml:"max_ack_pending"`
	// ShutdownGrace is how long in-flight requests may finish on shutdown;
	// default 30s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// CallTimeout bounds one upstream call, above the clients' own
	// timeouts; default 1m. With retry.budget it is also how long another
	// replica's call in flight is waited for before it is resolved.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// Retry is the backoff policy of upstream calls.
	Retry RetryConfig `yaml:"retry"`
}

// ReconcileConfig settles a create whose answer was lost (a timeout after
// the request was written, a reset connection, a replica killed mid-call):
// qualfile reads the vendor's records (VMS QueryQualification, SMS
// GetSignatureIdentList) instead of leaving the request ambiguous for an
// operator. douyin.add_role has no read that can decide and always goes to
// an operator.
type ReconcileConfig struct {
	// Enabled turns reconciliation on; default true.
	Enabled bool `yaml:"enabled"`
	// Window is the settling window; default 30s. A record just written
	// may not be listed at once: Reads reads are spread over the window,
	// the last at its end.
	Window time.Duration `yaml:"window"`
	// Reads is the number of answered reads in the window; default 4. A
	// failed read is tried again with the retry backoff inside the window.
	Reads int `yaml:"reads"`
	// ClockSkew: a VMS record created up to this long before the request
	// was first claimed still counts as this filing; default 2m.
	ClockSkew time.Duration `yaml:"clock_skew"`
	// Refile files a request whose record is still absent after the
	// window again, exactly once; default true. false leaves it ambiguous
	// in the dead letters, for an operator.
	Refile bool `yaml:"refile"`
}

// FilesConfig is the object store <PREFIX>_FILES, where the publisher puts
// SMS files too large for a NATS message and requests reference them.
type FilesConfig struct {
	// MaxAge is how long a file is kept if no outcome removes it first (a
	// request never consumed, or dead-lettered and waiting for a replay);
	// default 168h (7 days). A file is removed once its request succeeded
	// or was rejected.
	MaxAge time.Duration `yaml:"max_age"`
}

// LimitsConfig protects the vendors from qualfile, per vendor (vms, sms,
// douyin) and account.
type LimitsConfig struct {
	// Rate is the calls per second allowed per vendor account, across all
	// replicas (shared through the KV bucket <PREFIX>_RATE); 0 (default)
	// sets no limit. Throttling answers lower it for a while either way.
	Rate float64 `yaml:"rate"`
	// MinRate is the lowest rate throttling brings a vendor account to;
	// default 0.2 per second.
	MinRate float64 `yaml:"min_rate"`
	// RecoverEvery: after a throttling answer the rate rises by a quarter
	// per interval without one; default 10s.
	RecoverEvery time.Duration `yaml:"recover_every"`
	// Breaker is the circuit breaker.
	Breaker BreakerConfig `yaml:"breaker"`
}

// BreakerConfig is the circuit breaker of each vendor account.
type BreakerConfig struct {
	// Failures is the number of transient failures in a row (SystemError,
	// 1999, HTTP 5xx, timeouts, throttling) that opens it; default 5.
	Failures int `yaml:"failures"`
	// OpenFor is how long it holds every call once open; default 15s.
	OpenFor time.Duration `yaml:"open_for"`
	// Probes is the number of calls let through to test recovery; default 1.
	Probes int `yaml:"probes"`
}

// RetryConfig is the backoff policy (see retry.Policy): a few quick
// in-process attempts, then broker-side redelivery delays.
type RetryConfig struct {
	// InitialInterval is the wait after the first failed attempt; default
	// 200ms.
	InitialInterval time.Duration `yaml:"initial_interval"`
	// Multiplier scales each further wait and redelivery delay; default 2.
	Multiplier float64 `yaml:"multiplier"`
	// MaxInterval caps an in-process wait; default 5s.
	MaxInterval time.Duration `yaml:"max_interval"`
	// Jitter is the randomization fraction in [0, 1]; default 0.2. Unlike
	// the other settings, an explicit 0 is kept and switches jitter off.
	Jitter float64 `yaml:"jitter"`
	// Budget bounds the in-process attempts of one delivery; default 15s.
	Budget time.Duration `yaml:"budget"`
	// MaxAttempts is the number of in-process attempts per delivery;
	// default 4.
	MaxAttempts int `yaml:"max_attempts"`
	// ThrottleMultiplier scales the next delay after a throttled reply;
	// default 4.
	ThrottleMultiplier float64 `yaml:"throttle_multiplier"`
	// MaxThrottleInterval caps an in-process wait after a throttled reply;
	// default 30s.
	MaxThrottleInterval time.Duration `yaml:"max_throttle_interval"`
	// RedeliveryBase is the broker-side delay after the first delivery;
	// default 5s.
	RedeliveryBase time.Duration `yaml:"redelivery_base"`
	// RedeliveryMax caps the broker-side delay; default 10m.
	RedeliveryMax time.Duration `yaml:"redelivery_max"`
}

// AdminConfig is the admin HTTP listener (/metrics, /healthz, /readyz and,
// when asked for, /debug/pprof/).
type AdminConfig struct {
	// Listen is the address; default "127.0.0.1:9090". An explicit empty
	// string in the YAML disables the listener.
	Listen string `yaml:"listen"`
	// Pprof also serves Go's profiles under /debug/pprof/ (default off):
	// CPU, heap, goroutines, for finding where the time goes. They reveal
	// nothing of the requests but may be costly to take, so keep the
	// listener on loopback.
	Pprof bool `yaml:"pprof"`
}

// LogConfig configures logging.
type LogConfig struct {
	// Level is debug, info, warn or error; default info.
	Level string `yaml:"level"`
	// Development switches to human-readable development logging.
	Development bool `yaml:"development"`
}

// Account is one credential profile, named by the map key (requests name it
// in "account"; "default" when they name none). At least one vendor must be
// configured.
type Account struct {
	Volcengine *VolcengineAccount `yaml:"volcengine"`
	Douyin     *DouyinAccount     `yaml:"douyin"`
}

// VolcengineAccount is a Volcengine access key (VMS and SMS). The access key
// id may be given literally or from an environment variable or file; the
// secret access key and session token only from an environment variable or
// a file.
type VolcengineAccount struct {
	AccessKeyID         string `yaml:"access_key_id"`
	AccessKeyIDEnv      string `yaml:"access_key_id_env"`
	AccessKeyIDFile     string `yaml:"access_key_id_file"`
	SecretAccessKeyEnv  string `yaml:"secret_access_key_env"`
	SecretAccessKeyFile string `yaml:"secret_access_key_file"`
	// SessionTokenEnv or SessionTokenFile is only for STS keys.
	SessionTokenEnv  string `yaml:"session_token_env"`
	SessionTokenFile string `yaml:"session_token_file"`
	// Region is the signing region; default cn-north-1.
	Region string `yaml:"region"`
	// VMSEndpoint and SMSEndpoint are the base URLs; the production hosts
	// by default.
	VMSEndpoint string `yaml:"vms_endpoint"`
	SMSEndpoint string `yaml:"sms_endpoint"`
	// Timeout bounds one call; default 10s.
	Timeout time.Duration `yaml:"timeout"`
}

// DouyinAccount is a Douyin open-platform app. The app secret comes only
// from an environment variable or a file.
type DouyinAccount struct {
	AppID         string `yaml:"app_id"`
	AppSecretEnv  string `yaml:"app_secret_env"`
	AppSecretFile string `yaml:"app_secret_file"`
	// BaseURL is the vendor host; default the production host.
	BaseURL string `yaml:"base_url"`
	// Timeout bounds one call; default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// CheckType is the sandbox's simulated review (OK or REJECT); refused
	// with the production host.
	CheckType string `yaml:"check_type"`
}

// Default returns the configuration used when nothing is configured.
func Default() *Config {
	c := &Config{
		Admin:     AdminConfig{Listen: DefaultAdminListen},
		Reconcile: ReconcileConfig{Enabled: true, Refile: true},
		Consumer: ConsumerConfig{
			Retry: RetryConfig{Jitter: retry.DefaultRandomizationFactor},
		},
	}
	c.applyDefaults()
	return c
}

// applyDefaults replaces zero values by their defaults, except where zero
// has a meaning of its own: admin.listen (disabled), consumer.retry.jitter
// (no jitter), streams.results_max_age and streams.dead_max_age (forever).
// Those defaults are set by Default, which Load decodes the YAML onto.
func (c *Config) applyDefaults() {
	setS := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setI := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	setD := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setF := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}

	setS(&c.NATS.Name, DefaultNATSName)
	setD(&c.NATS.ConnectTimeout, DefaultConnectTimeout)
	setD(&c.NATS.ReconnectWait, DefaultReconnectWait)
	setD(&c.NATS.Health.Interval, DefaultHealthInterval)
	setD(&c.NATS.Health.Timeout, DefaultHealthTimeout)
	setI(&c.NATS.Health.Failures, DefaultHealthFailures)

	setS(&c.Embedded.StoreDir, DefaultStoreDir)
	setS(&c.Embedded.Listen, DefaultEmbeddedListen)

	setS(&c.Subjects.Prefix, DefaultSubjectPrefix)

	setI(&c.Streams.Replicas, DefaultReplicas)
	setD(&c.Streams.AuditMaxAge, DefaultAuditMaxAge)
	setD(&c.Streams.DuplicateWindow, DefaultDuplicateWindow)

	setD(&c.Ledger.MaxAge, DefaultLedgerMaxAge)

	k := &c.Consumer
	setS(&k.Durable, DefaultDurable)
	setI(&k.Concurrency, DefaultConcurrency)
	setI(&k.MaxDeliver, DefaultMaxDeliver)
	setD(&k.AckWait, DefaultAckWait)
	setI(&k.FetchBatch, DefaultFetchBatch)
	setI(&k.MaxAckPending, DefaultMaxAckPending)
	setD(&k.ShutdownGrace, DefaultShutdownGrace)
	setD(&k.CallTimeout, DefaultCallTimeout)

	r := &k.Retry
	setD(&r.InitialInterval, retry.DefaultInitialInterval)
	setF(&r.Multiplier, retry.DefaultMultiplier)
	setD(&r.MaxInterval, retry.DefaultMaxInterval)
	setD(&r.Budget, retry.DefaultMaxElapsedTime)
	setI(&r.MaxAttempts, retry.DefaultMaxAttempts)
	setF(&r.ThrottleMultiplier, retry.DefaultThrottleMultiplier)
	setD(&r.MaxThrottleInterval, retry.DefaultMaxThrottleInterval)
	setD(&r.RedeliveryBase, retry.DefaultRedeliveryBase)
	setD(&r.RedeliveryMax, retry.DefaultRedeliveryMax)

	setD(&c.Reconcile.Window, DefaultReconcileWindow)
	setI(&c.Reconcile.Reads, DefaultReconcileReads)
	setD(&c.Reconcile.ClockSkew, DefaultReconcileSkew)

	if c.Limits.MinRate == 0 {
		c.Limits.MinRate = DefaultMinRate
	}
	setD(&c.Limits.RecoverEvery, DefaultRecoverEvery)
	setD(&c.Files.MaxAge, DefaultFilesMaxAge)
	setI(&c.Limits.Breaker.Failures, DefaultBreakerFailures)
	setD(&c.Limits.Breaker.OpenFor, DefaultBreakerOpenFor)
	setI(&c.Limits.Breaker.Probes, DefaultBreakerProbes)

	setS(&c.Log.Level, DefaultLogLevel)

	for _, a := range c.Accounts {
		if v := a.Volcengine; v != nil {
			setS(&v.Region, DefaultRegion)
			setS(&v.VMSEndpoint, volcengine.DefaultVMSEndpoint)
			setS(&v.SMSEndpoint, volcengine.DefaultSMSEndpoint)
			setD(&v.Timeout, DefaultVolcengineTimeout)
		}
		if d := a.Douyin; d != nil {
			setS(&d.BaseURL, douyin.ProductionBaseURL)
			setD(&d.Timeout, DefaultDouyinTimeout)
		}
	}
}

// RetryPolicy returns the backoff policy of consumer.retry. A jitter of 0
// switches jitter off (retry.Policy.NoJitter).
func (c *Config) RetryPolicy() retry.Policy {
	r := c.Consumer.Retry
	return retry.Policy{
		InitialInterval:     r.InitialInterval,
		Multiplier:          r.Multiplier,
		MaxInterval:         r.MaxInterval,
		RandomizationFactor: r.Jitter,
		NoJitter:            r.Jitter == 0,
		MaxElapsedTime:      r.Budget,
		MaxAttempts:         r.MaxAttempts,
		ThrottleMultiplier:  r.ThrottleMultiplier,
		MaxThrottleInterval: r.MaxThrottleInterval,
		RedeliveryBase:      r.RedeliveryBase,
		RedeliveryMax:       r.RedeliveryMax,
	}
}
