package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// MaxReplicas is the most replicas a JetStream stream can have.
const MaxReplicas = 5

var (
	// prefixPattern: one or more subject tokens that also make a valid
	// stream name once '.' and '-' become '_'.
	prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
	// durablePattern: a JetStream consumer name.
	durablePattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	// accountPattern: the account names a request may carry.
	accountPattern = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	// envNamePattern: an environment variable name.
	envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// logLevels are the accepted log.level values.
var logLevels = []string{"debug", "info", "warn", "error"}

// Validate reports every problem of c, joined with errors.Join; each is a
// *FieldError naming the YAML key and matches ErrInvalidConfig. It does not
// apply defaults and does not read secrets (ResolveAccounts and NATSOptions
// do), so it can be called again after flags changed c.
func (c *Config) Validate() error {
	v := &validator{}
	c.validateNATS(v)
	c.validateEmbedded(v)
	c.validateStreams(v)
	c.validateLedger(v)
	c.validateConsumer(v)
	c.validateReconcile(v)
	c.validateLimits(v)
	v.positive("files.max_age", c.Files.MaxAge)
	if c.Admin.Listen != "" {
		v.hostPort("admin.listen", c.Admin.Listen)
	}
	c.validateConsole(v)
	if !slices.Contains(logLevels, strings.ToLower(c.Log.Level)) {
		v.add("log.level", "must be one of %s", strings.Join(logLevels, ", "))
	}
	c.validateAccounts(v)
	return errors.Join(v.errs...)
}

// validator collects problems.
type validator struct{ errs []error }

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, fieldErr(key, format, args...))
}

func (v *validator) positive(key string, d time.Duration) {
	if d <= 0 {
		v.add(key, "must be a positive duration such as 30s")
	}
}

func (v *validator) notNegative(key string, d time.Duration) {
	if d < 0 {
		v.add(key, "must not be negative (0 means forever)")
	}
}

func (v *validator) atLeast(key string, n, lowest int) {
	if n < lowest {
		v.add(key, "must be at least %d", lowest)
	}
}

// envName checks that name, when set, is an environment variable name. The
// value is not repeated: a secret pasted here must not reach the logs.
func (v *validator) envName(key, name string) {
	if name != "" && !envNamePattern.MatchString(name) {
		v.add(key, "must be the name of an environment variable (letters, digits and _), not the secret itself")
	}
}

// exclusive reports when more than one of the named settings is set.
func (v *validator) exclusive(keys []string, values ...string) {
	var set []string
	for i, val := range values {
		if val != "" {
			set = append(set, keys[i])
		}
	}
	if len(set) > 1 {
		v.add(set[1], "cannot be combined with %s", set[0])
	}
}

// hostPort checks a host:port listen address.
func (v *validator) hostPort(key, addr string) (host string, ok bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, "%q is not a host:port address", addr)
		return "", false
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		v.add(key, "%q has no valid port (0 to 65535)", addr)
		return "", false
	}
	return host, true
}

// httpURL checks a vendor base URL. The value is not repeated in case it
// holds user info.
func (v *validator) httpURL(key, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Opaque != "" {
		v.add(key, "must be an absolute http or https URL")
		return
	}
	if u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		v.add(key, "must not contain user info, a query or a fragment")
	}
}

func (c *Config) validateNATS(v *validator) {
	n := c.NATS
	if n.URL != "" && n.URL != EmbeddedURL {
		if problem := natsURLProblem(n.URL); problem != "" {
			v.add("nats.url", "%s", problem)
		}
	}
	v.exclusive([]string{"nats.creds_file", "nats.nkey_file", "nats.user"}, n.CredsFile, n.NkeyFile, n.User)
	switch {
	case n.User != "" && n.PasswordEnv == "":
		v.add("nats.password_env", "is required with nats.user (the password is read from that environment variable)")
	case n.User == "" && n.PasswordEnv != "":
		v.add("nats.user", "is required with nats.password_env")
	}
	v.envName("nats.password_env", n.PasswordEnv)
	if (n.TLS.CertFile == "") != (n.TLS.KeyFile == "") {
		v.add("nats.tls", "cert_file and key_file must be given together")
	}
	if n.Name == "" {
		v.add("nats.name", "must not be empty")
	}
	v.positive("nats.connect_timeout", n.ConnectTimeout)
	v.positive("nats.reconnect_wait", n.ReconnectWait)
	v.positive("nats.health.interval", n.Health.Interval)
	v.positive("nats.health.timeout", n.Health.Timeout)
	v.atLeast("nats.health.failures", n.Health.Failures, 1)
}

// natsURLProblem checks a NATS URL list the way the client reads it
// (comma separated; nats:// assumed without a scheme). The URL is never
// repeated: it might hold credentials.
func natsURLProblem(list string) string {
	for _, part := range strings.Split(list, ",") {
		p := strings.TrimSpace(part)
		if p == "" {
			return "contains an empty server URL"
		}
		if !strings.Contains(p, "://") {
			p = "nats://" + p
		}
		u, err := url.Parse(p)
		if err != nil {
			return "is not a list of server URLs"
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Sprintf("scheme %q is not nats, tls, ws or wss", u.Scheme)
		}
		if u.Hostname() == "" {
			return "has a server URL without a host"
		}
		if u.User != nil {
			return "must not contain credentials: use nats.creds_file, nats.nkey_file, or nats.user with nats.password_env"
		}
	}
	return ""
}

func (c *Config) validateEmbedded(v *validator) {
	e := c.Embedded
	if strings.TrimSpace(e.StoreDir) == "" {
		v.add("embedded.store_dir", "must not be empty")
	}
	host, ok := v.hostPort("embedded.listen", e.Listen)
	if ok && !isLoopbackHost(host) {
		v.add("embedded.listen", "%q is not a loopback address: the embedded server has no authentication or TLS; run a NATS server and set nats.url to serve other hosts", e.Listen)
	}
}

// isLoopbackHost reports whether host (of a host:port) is "localhost" or a
// loopback IP address. An empty host means every interface and is not
// loopback.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *Config) validateStreams(v *validator) {
	if !prefixPattern.MatchString(c.Subjects.Prefix) {
		v.add("subjects.prefix", "%q must be one or more subject tokens of letters, digits, _ and - separated by dots", c.Subjects.Prefix)
	}
	s := c.Streams
	if s.Replicas < 1 || s.Replicas > MaxReplicas {
		v.add("streams.replicas", "must be between 1 and %d", MaxReplicas)
	}
	v.notNegative("streams.audit_max_age", s.AuditMaxAge)
	v.positive("streams.duplicate_window", s.DuplicateWindow)
	v.notNegative("streams.results_max_age", s.ResultsMaxAge)
	v.notNegative("streams.dead_max_age", s.DeadMaxAge)
}

func (c *Config) validateLedger(v *validator) {
	age := c.Ledger.MaxAge
	switch {
	case age <= 0:
		v.add("ledger.max_age", "must be a positive duration such as 720h")
	case age <= c.Streams.DuplicateWindow:
		// Past the duplicate window only the ledger recognises an id
		// published again; a ledger that forgets sooner lets a redelivered
		// or republished request be filed twice.
		v.add("ledger.max_age", "%s must be longer than streams.duplicate_window (%s): past the duplicate window only the ledger recognises a request id seen before", age, c.Streams.DuplicateWindow)
	}
}

func (c *Config) validateConsumer(v *validator) {
	k := c.Consumer
	if !durablePattern.MatchString(k.Durable) {
		v.add("consumer.durable", "%q must be letters, digits, _ and -", k.Durable)
	}
	v.atLeast("consumer.concurrency", k.Concurrency, 1)
	v.atLeast("consumer.max_deliver", k.MaxDeliver, 1)
	root := messages.Subjects{Prefix: c.Subjects.Prefix}.Root()
	for i, p := range k.ReplyTo {
		switch {
		case !messages.ValidReplySubject(p):
			v.add(fmt.Sprintf("consumer.reply_to[%d]", i), "must be a subject prefix without wildcards or spaces")
		case p == root || strings.HasPrefix(p, root+".") || strings.HasPrefix(root, p+".") || strings.HasPrefix(p, "$"):
			v.add(fmt.Sprintf("consumer.reply_to[%d]", i), "%q would let a request make the consumer publish into qualfile's own subjects or the system's", p)
		case slices.ContainsFunc([]roles.Role{roles.Consumer, roles.Operator, roles.Auditor, ""}, func(r roles.Role) bool {
			s := messages.Subjects{Prefix: c.Subjects.Prefix}
			inbox := roles.Inbox(r, s)
			if r == "" {
				inbox = roles.TenantInboxes(s)
			}
			return p == inbox || strings.HasPrefix(p, inbox+".") || strings.HasPrefix(inbox, p+".")
		}):
			v.add(fmt.Sprintf("consumer.reply_to[%d]", i), "%q would let a request make the consumer publish into the inbox of another role than the default tenant's submitters', or of a tenant's", p)
		}
	}
	if k.AckWait < time.Second {
		v.add("consumer.ack_wait", "must be at least 1s")
	}
	if k.Lease < time.Second {
		v.add("consumer.lease", "must be at least 1s")
	}
	v.atLeast("consumer.fetch_batch", k.FetchBatch, 1)
	v.atLeast("consumer.max_ack_pending", k.MaxAckPending, 1)
	if k.ShutdownGrace < 0 {
		v.add("consumer.shutdown_grace", "must not be negative")
	}
	if k.CallTimeout < time.Second {
		v.add("consumer.call_timeout", "must be at least 1s")
	}

	r := k.Retry
	n := len(v.errs)
	v.positive("consumer.retry.initial_interval", r.InitialInterval)
	if !(r.Multiplier >= 1) || math.IsInf(r.Multiplier, 0) {
		v.add("consumer.retry.multiplier", "must be at least 1")
	}
	if r.MaxInterval < r.InitialInterval {
		v.add("consumer.retry.max_interval", "must be at least consumer.retry.initial_interval")
	}
	if !(r.Jitter >= 0 && r.Jitter <= 1) {
		v.add("consumer.retry.jitter", "must be between 0 and 1")
	}
	v.positive("consumer.retry.budget", r.Budget)
	v.atLeast("consumer.retry.max_attempts", r.MaxAttempts, 1)
	if !(r.ThrottleMultiplier >= 1) || math.IsInf(r.ThrottleMultiplier, 0) {
		v.add("consumer.retry.throttle_multiplier", "must be at least 1")
	}
	if r.MaxThrottleInterval < r.MaxInterval {
		v.add("consumer.retry.max_throttle_interval", "must be at least consumer.retry.max_interval")
	}
	v.positive("consumer.retry.redelivery_base", r.RedeliveryBase)
	if r.RedeliveryMax < r.RedeliveryBase {
		v.add("consumer.retry.redelivery_max", "must be at least consumer.retry.redelivery_base")
	}
	if len(v.errs) == n {
		// Backstop: whatever retry.Policy itself refuses.
		if err := c.RetryPolicy().Validate(); err != nil {
			v.errs = append(v.errs, &FieldError{Key: "consumer.retry", Problem: "invalid policy", Err: err})
		}
	}
}

func (c *Config) validateAccounts(v *validator) {
	for _, name := range slices.Sorted(maps.Keys(c.Accounts)) {
		a := c.Accounts[name]
		key := "accounts." + name
		if a.Tenant != "" && !messages.ValidTenant(a.Tenant) {
			v.add(key+".tenant", "a tenant's name is at most %d lower-case letters, digits and _, and not vms, sms, douyin, breaker or unknown", messages.MaxTenantLen)
		}
		if len(name) > messages.MaxAccountLen || !accountPattern.MatchString(name) {
			v.add(key, "account names must be at most %d letters, digits and . _ -", messages.MaxAccountLen)
		}
		if a.Volcengine == nil && a.Douyin == nil {
			v.add(key, "configures neither volcengine nor douyin")
		}
		if x := a.Volcengine; x != nil {
			k := key + ".volcengine."
			v.exclusive([]string{k + "access_key_id", k + "access_key_id_env", k + "access_key_id_file"},
				x.AccessKeyID, x.AccessKeyIDEnv, x.AccessKeyIDFile)
			v.exclusive([]string{k + "secret_access_key_env", k + "secret_access_key_file"},
				x.SecretAccessKeyEnv, x.SecretAccessKeyFile)
			v.exclusive([]string{k + "session_token_env", k + "session_token_file"},
				x.SessionTokenEnv, x.SessionTokenFile)
			v.envName(k+"access_key_id_env", x.AccessKeyIDEnv)
			v.envName(k+"secret_access_key_env", x.SecretAccessKeyEnv)
			v.envName(k+"session_token_env", x.SessionTokenEnv)
			if x.Region == "" || strings.ContainsAny(x.Region, "/ \t\r\n") {
				v.add(k+"region", "must be a region name such as cn-north-1")
			}
			v.httpURL(k+"vms_endpoint", x.VMSEndpoint)
			v.httpURL(k+"sms_endpoint", x.SMSEndpoint)
			v.positive(k+"timeout", x.Timeout)
		}
		if x := a.Douyin; x != nil {
			k := key + ".douyin."
			v.exclusive([]string{k + "app_secret_env", k + "app_secret_file"}, x.AppSecretEnv, x.AppSecretFile)
			v.envName(k+"app_secret_env", x.AppSecretEnv)
			v.httpURL(k+"base_url", x.BaseURL)
			v.positive(k+"timeout", x.Timeout)
			switch x.CheckType {
			case "":
			case douyin.CheckTypeOK, douyin.CheckTypeReject:
				if strings.TrimRight(x.BaseURL, "/") == douyin.ProductionBaseURL {
					v.add(k+"check_type", "only works with the sandbox, not the production base_url")
				}
			default:
				v.add(k+"check_type", "must be %s or %s", douyin.CheckTypeOK, douyin.CheckTypeReject)
			}
		}
	}
}

func (c *Config) validateReconcile(v *validator) {
	r := c.Reconcile
	v.positive("reconcile.window", r.Window)
	v.atLeast("reconcile.reads", r.Reads, 1)
	if r.Reads > 100 {
		v.add("reconcile.reads", "must be at most 100 (each read may list many pages)")
	}
	if r.Window > time.Hour {
		v.add("reconcile.window", "must be at most 1h: the request's message is held for the whole window")
	}
}

func (c *Config) validateLimits(v *validator) {
	l := c.Limits
	if l.Rate < 0 || l.Rate > 10000 {
		v.add("limits.rate", "must be between 0 (no limit) and 10000 calls per second")
	}
	if l.MinRate <= 0 || (l.Rate > 0 && l.MinRate > l.Rate) {
		v.add("limits.min_rate", "must be positive and at most limits.rate")
	}
	v.positive("limits.recover_every", l.RecoverEvery)
	v.atLeast("limits.breaker.failures", l.Breaker.Failures, 1)
	v.positive("limits.breaker.open_for", l.Breaker.OpenFor)
	v.atLeast("limits.breaker.probes", l.Breaker.Probes, 1)
}

// validateConsole checks the console's listener and users.
func (c *Config) validateConsole(v *validator) {
	cc := c.Console
	if cc.Listen != "" {
		v.hostPort("console.listen", cc.Listen)
	}
	v.positive("console.session", cc.Session)
	if h := cc.TrustedHeader; h != "" && !headerPattern.MatchString(h) {
		v.add("console.trusted_header", "must be a header name such as X-Forwarded-User")
	}
	seen := map[string]bool{}
	for i, u := range cc.Users {
		key := fmt.Sprintf("console.users[%d]", i)
		if !operatorPattern.MatchString(u.Name) {
			v.add(key+".name", "must be 1 to 64 lower-case letters, digits and _ (it names the operator in the trail)")
		} else if seen[u.Name] {
			v.add(key+".name", "%q is listed twice", u.Name)
		}
		seen[u.Name] = true
		if u.Role != "operator" && u.Role != "auditor" {
			v.add(key+".role", "must be operator or auditor")
		}
		if u.PasswordHash != "" && !strings.HasPrefix(u.PasswordHash, "$2") {
			v.add(key+".password_hash", "must be a bcrypt hash (publisher hash-password)")
		}
		if u.PasswordHash == "" && cc.TrustedHeader == "" {
			v.add(key+".password_hash", "required unless console.trusted_header is set")
		}
	}
}

var (
	headerPattern   = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
	operatorPattern = regexp.MustCompile(`^[a-z0-9_]{1,64}$`)
)
