// Package config is the consumer's configuration: a YAML file, QUALFILE_*
// environment overrides, defaults that make it run anywhere (an embedded
// NATS server on 127.0.0.1:4222, store under ./data), validation that
// reports every problem at once, and the resolution of account secrets.
// docs/configuration.md describes it and examples/consumer.yaml is the
// reference of every key, its default and its meaning.
//
// Secrets are never part of the YAML: the configuration names an
// environment variable (*_env) or a file (*_file) that holds each one, and
// a literal secret key such as secret_access_key is rejected as an unknown
// key. Durations are Go duration strings ("30s"); a bare number is rejected.
package config

import (
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/internal/embedded"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// EmbeddedURL as nats.url chooses the embedded server.
const EmbeddedURL = "embedded"

// Config is the consumer's configuration; the YAML keys are in the field
// tags. Every field is exported so that the caller can apply command-line
// flags after Load and call Validate again.
type Config struct {
	NATS      NATSConfig         `yaml:"nats"`
	Embedded  EmbeddedConfig     `yaml:"embedded"`
	Subjects  SubjectsConfig     `yaml:"subjects"`
	Streams   StreamsConfig      `yaml:"streams"`
	Ledger    LedgerConfig       `yaml:"ledger"`
	Consumer  ConsumerConfig     `yaml:"consumer"`
	Reconcile ReconcileConfig    `yaml:"reconcile"`
	Limits    LimitsConfig       `yaml:"limits"`
	Files     FilesConfig        `yaml:"files"`
	Admin     AdminConfig        `yaml:"admin"`
	Console   ConsoleConfig      `yaml:"console"`
	Log       LogConfig          `yaml:"log"`
	Accounts  map[string]Account `yaml:"accounts"`
}

// NATSConfig is the connection to the NATS servers.
type NATSConfig struct {
	// URL is the server URL list (comma separated); empty or EmbeddedURL
	// is the embedded server. It must not contain credentials.
	URL       string `yaml:"url"`
	CredsFile string `yaml:"creds_file"`
	NkeyFile  string `yaml:"nkey_file"`
	// User's password is read from the environment variable PasswordEnv.
	User           string        `yaml:"user"`
	PasswordEnv    string        `yaml:"password_env"`
	TLS            TLSConfig     `yaml:"tls"`
	Name           string        `yaml:"name"`
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	ReconnectWait  time.Duration `yaml:"reconnect_wait"`
	Health         HealthConfig  `yaml:"health"`
}

// HealthConfig is the JetStream health watch behind /readyz
// (docs/observability.md).
type HealthConfig struct {
	Interval time.Duration `yaml:"interval"`
	Timeout  time.Duration `yaml:"timeout"`
	Failures int           `yaml:"failures"`
}

// TLSConfig is the client side of a TLS connection to NATS. Server
// verification cannot be switched off.
type TLSConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// enabled reports whether any TLS setting is given.
func (t TLSConfig) enabled() bool {
	return t.CAFile != "" || t.CertFile != "" || t.KeyFile != ""
}

// EmbeddedConfig is the NATS server started when NATS.URL is empty.
type EmbeddedConfig struct {
	StoreDir string `yaml:"store_dir"`
	Listen   string `yaml:"listen"`
}

// SubjectsConfig names the subjects; stream and bucket names derive from
// the prefix.
type SubjectsConfig struct {
	Prefix string `yaml:"prefix"`
}

// StreamsConfig configures the JetStream streams. A zero ResultsMaxAge or
// DeadMaxAge keeps them forever.
type StreamsConfig struct {
	Replicas        int           `yaml:"replicas"`
	AuditMaxAge     time.Duration `yaml:"audit_max_age"`
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	ResultsMaxAge   time.Duration `yaml:"results_max_age"`
	RedactResults   bool          `yaml:"redact_results"`
	DeadMaxAge      time.Duration `yaml:"dead_max_age"`
}

// LedgerConfig configures the idempotency ledger (KV bucket
// <PREFIX>_LEDGER).
type LedgerConfig struct {
	MaxAge time.Duration `yaml:"max_age"`
}

// ConsumerConfig configures the durable pull consumer and the work loop.
type ConsumerConfig struct {
	Durable     string        `yaml:"durable"`
	Concurrency int           `yaml:"concurrency"`
	MaxDeliver  int           `yaml:"max_deliver"`
	AckWait     time.Duration `yaml:"ack_wait"`
	// Lease: another replica's "calling" entry seen unchanged this long is
	// taken for dead (docs/guarantees.md#the-in-flight-lease).
	Lease         time.Duration `yaml:"lease"`
	FetchBatch    int           `yaml:"fetch_batch"`
	MaxAckPending int           `yaml:"max_ack_pending"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	CallTimeout   time.Duration `yaml:"call_timeout"`
	Retry         RetryConfig   `yaml:"retry"`
	// ReplyTo are the subject prefixes a request's reply_to may start
	// with; empty: the submitters' inbox prefix, _INBOX.<prefix>.submitter.
	ReplyTo []string `yaml:"reply_to"`
}

// ReconcileConfig settles a VMS or SMS create whose answer was lost
// (docs/guarantees.md#reconciliation).
type ReconcileConfig struct {
	Enabled bool          `yaml:"enabled"`
	Window  time.Duration `yaml:"window"`
	Reads   int           `yaml:"reads"`
	Refile  bool          `yaml:"refile"`
}

// FilesConfig is the object store <PREFIX>_FILES of SMS files too large
// for a NATS message.
type FilesConfig struct {
	MaxAge time.Duration `yaml:"max_age"`
}

// LimitsConfig protects the vendors, per vendor and account
// (docs/protecting-vendors.md). A zero Rate sets no limit.
type LimitsConfig struct {
	Rate         float64       `yaml:"rate"`
	MinRate      float64       `yaml:"min_rate"`
	RecoverEvery time.Duration `yaml:"recover_every"`
	Breaker      BreakerConfig `yaml:"breaker"`
}

// BreakerConfig is the circuit breaker of each vendor account.
type BreakerConfig struct {
	Failures int           `yaml:"failures"`
	OpenFor  time.Duration `yaml:"open_for"`
	Probes   int           `yaml:"probes"`
}

// RetryConfig is the backoff policy (see retry.Policy).
type RetryConfig struct {
	InitialInterval time.Duration `yaml:"initial_interval"`
	Multiplier      float64       `yaml:"multiplier"`
	MaxInterval     time.Duration `yaml:"max_interval"`
	// Jitter is the randomization fraction in [0, 1]; unlike the other
	// settings, an explicit 0 is kept and switches jitter off.
	Jitter              float64       `yaml:"jitter"`
	Budget              time.Duration `yaml:"budget"`
	MaxAttempts         int           `yaml:"max_attempts"`
	ThrottleMultiplier  float64       `yaml:"throttle_multiplier"`
	MaxThrottleInterval time.Duration `yaml:"max_throttle_interval"`
	RedeliveryBase      time.Duration `yaml:"redelivery_base"`
	RedeliveryMax       time.Duration `yaml:"redelivery_max"`
}

// AdminConfig is the admin HTTP listener; an explicit empty Listen in the
// YAML disables it.
type AdminConfig struct {
	Listen string `yaml:"listen"`
	Pprof  bool   `yaml:"pprof"`
}

// ConsoleConfig is the web console for compliance staff and operators
// (package console): served by the consumer when Listen is set.
type ConsoleConfig struct {
	// Listen is where the console is served; "" serves none (--sandbox
	// serves it on 127.0.0.1:8089 unless set).
	Listen string `yaml:"listen"`
	// Store is the SQLite file of its read model, a cache rebuilt from
	// the streams (default console.db in embedded.store_dir, ./data).
	Store string `yaml:"store"`
	// Session is how long a sign-in lasts (default 8h).
	Session time.Duration `yaml:"session"`
	// TrustedHeader names the header in which an authenticating proxy in
	// front of the console (oauth2-proxy's X-Forwarded-User) names the
	// user; the user must be one of Users. Only for a console that the
	// proxy alone can reach.
	TrustedHeader string `yaml:"trusted_header"`
	// Users may sign in, each with a role.
	Users []ConsoleUser `yaml:"users"`
	// SecureCookies marks the session cookie Secure: set it when the
	// console is reached over HTTPS.
	SecureCookies bool `yaml:"secure_cookies"`
}

// ConsoleUser is one user of the console.
type ConsoleUser struct {
	// Name is the user's name, recorded as the operator of every order
	// given: lower-case letters, digits and _.
	Name string `yaml:"name"`
	// Role is "operator" (reads everything, replays and resolves) or
	// "auditor" (reads, personal data masked; changes nothing).
	Role string `yaml:"role"`
	// PasswordHash is the bcrypt hash of the user's password (`publisher
	// hash-password`); empty: the user signs in through TrustedHeader only.
	PasswordHash string `yaml:"password_hash"`
}

// LogConfig configures logging.
type LogConfig struct {
	Level       string `yaml:"level"`
	Development bool   `yaml:"development"`
}

// Account is one credential profile, named by the map key; at least one
// vendor must be configured.
type Account struct {
	// Tenant names the tenant that owns the account: only requests on its
	// subjects (<prefix>.request.<tenant>.<api>) may use it. Empty: the
	// default tenant's (<prefix>.request.<api>).
	Tenant     string             `yaml:"tenant"`
	Volcengine *VolcengineAccount `yaml:"volcengine"`
	Douyin     *DouyinAccount     `yaml:"douyin"`
}

// VolcengineAccount is a Volcengine access key (VMS and SMS). Only the
// access key id may be given literally.
type VolcengineAccount struct {
	AccessKeyID         string        `yaml:"access_key_id"`
	AccessKeyIDEnv      string        `yaml:"access_key_id_env"`
	AccessKeyIDFile     string        `yaml:"access_key_id_file"`
	SecretAccessKeyEnv  string        `yaml:"secret_access_key_env"`
	SecretAccessKeyFile string        `yaml:"secret_access_key_file"`
	SessionTokenEnv     string        `yaml:"session_token_env"`
	SessionTokenFile    string        `yaml:"session_token_file"`
	Region              string        `yaml:"region"`
	VMSEndpoint         string        `yaml:"vms_endpoint"`
	SMSEndpoint         string        `yaml:"sms_endpoint"`
	Timeout             time.Duration `yaml:"timeout"`
}

// DouyinAccount is a Douyin open-platform app.
type DouyinAccount struct {
	AppID         string        `yaml:"app_id"`
	AppSecretEnv  string        `yaml:"app_secret_env"`
	AppSecretFile string        `yaml:"app_secret_file"`
	BaseURL       string        `yaml:"base_url"`
	Timeout       time.Duration `yaml:"timeout"`
	// CheckType is the sandbox's simulated review (OK or REJECT).
	CheckType string `yaml:"check_type"`
}

// Default returns the configuration used when nothing is configured.
func Default() *Config {
	c := &Config{
		Admin:     AdminConfig{Listen: "127.0.0.1:9090"},
		Console:   ConsoleConfig{Session: 8 * time.Hour},
		Reconcile: ReconcileConfig{Enabled: true, Refile: true},
		Streams:   StreamsConfig{RedactResults: true},
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

	setS(&c.NATS.Name, "qualfile")
	setD(&c.NATS.ConnectTimeout, 5*time.Second)
	setD(&c.NATS.ReconnectWait, 2*time.Second)
	setD(&c.NATS.Health.Interval, 5*time.Second)
	setD(&c.NATS.Health.Timeout, 2*time.Second)
	setI(&c.NATS.Health.Failures, 3)

	setS(&c.Embedded.StoreDir, embedded.DefaultStoreDir)
	setS(&c.Embedded.Listen, "127.0.0.1:4222")

	setS(&c.Subjects.Prefix, messages.DefaultPrefix)

	setI(&c.Streams.Replicas, 1)
	setD(&c.Streams.AuditMaxAge, 90*24*time.Hour)
	setD(&c.Streams.DuplicateWindow, 24*time.Hour)

	setD(&c.Ledger.MaxAge, ledger.DefaultMaxAge)

	k := &c.Consumer
	setS(&k.Durable, "qualfile")
	setI(&k.Concurrency, 64)
	setI(&k.MaxDeliver, 10)
	setD(&k.AckWait, 10*time.Second)
	setD(&k.Lease, 10*time.Second)
	setI(&k.FetchBatch, 16)
	setI(&k.MaxAckPending, 1024)
	setD(&k.ShutdownGrace, 30*time.Second)
	setD(&k.CallTimeout, time.Minute)

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

	setD(&c.Reconcile.Window, 30*time.Second)
	setI(&c.Reconcile.Reads, 4)

	setF(&c.Limits.MinRate, guard.DefaultMinRate)
	setD(&c.Limits.RecoverEvery, guard.DefaultRecoverEvery)
	setI(&c.Limits.Breaker.Failures, 5)
	setD(&c.Limits.Breaker.OpenFor, 15*time.Second)
	setI(&c.Limits.Breaker.Probes, 1)
	setD(&c.Files.MaxAge, 7*24*time.Hour)

	setS(&c.Log.Level, "info")

	for _, a := range c.Accounts {
		if v := a.Volcengine; v != nil {
			setS(&v.Region, volcengine.DefaultRegion)
			setS(&v.VMSEndpoint, volcengine.DefaultVMSEndpoint)
			setS(&v.SMSEndpoint, volcengine.DefaultSMSEndpoint)
			setD(&v.Timeout, volcengine.DefaultTimeout)
		}
		if d := a.Douyin; d != nil {
			setS(&d.BaseURL, douyin.ProductionBaseURL)
			setD(&d.Timeout, douyin.DefaultTimeout)
		}
	}
}

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
