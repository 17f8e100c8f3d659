package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/internal/retry"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeFile writes content to a new file in a test directory.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefault(t *testing.T) {
	c, err := Load("", env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Errorf("Load without file or env = %+v, want Default() %+v", c, Default())
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"nats.url", c.NATS.URL, ""},
		{"nats.health.interval", c.NATS.Health.Interval, 5 * time.Second},
		{"nats.health.timeout", c.NATS.Health.Timeout, 2 * time.Second},
		{"nats.health.failures", c.NATS.Health.Failures, 3},
		{"embedded.store_dir", c.Embedded.StoreDir, "./data"},
		{"embedded.listen", c.Embedded.Listen, "127.0.0.1:4222"},
		{"subjects.prefix", c.Subjects.Prefix, "filing"},
		{"streams.replicas", c.Streams.Replicas, 1},
		{"streams.audit_max_age", c.Streams.AuditMaxAge, 2160 * time.Hour},
		{"streams.duplicate_window", c.Streams.DuplicateWindow, 24 * time.Hour},
		{"streams.results_max_age", c.Streams.ResultsMaxAge, time.Duration(0)},
		{"streams.dead_max_age", c.Streams.DeadMaxAge, time.Duration(0)},
		{"streams.redact_results", c.Streams.RedactResults, true},
		{"ledger.max_age", c.Ledger.MaxAge, 720 * time.Hour},
		{"consumer.durable", c.Consumer.Durable, "qualfile"},
		{"consumer.concurrency", c.Consumer.Concurrency, 64},
		{"consumer.max_deliver", c.Consumer.MaxDeliver, 10},
		{"consumer.ack_wait", c.Consumer.AckWait, 10 * time.Second},
		{"consumer.lease", c.Consumer.Lease, 10 * time.Second},
		{"consumer.fetch_batch", c.Consumer.FetchBatch, 16},
		{"consumer.shutdown_grace", c.Consumer.ShutdownGrace, 30 * time.Second},
		{"consumer.call_timeout", c.Consumer.CallTimeout, time.Minute},
		{"retry.initial_interval", c.Consumer.Retry.InitialInterval, 200 * time.Millisecond},
		{"retry.multiplier", c.Consumer.Retry.Multiplier, 2.0},
		{"retry.max_interval", c.Consumer.Retry.MaxInterval, 5 * time.Second},
		{"retry.jitter", c.Consumer.Retry.Jitter, 0.2},
		{"retry.budget", c.Consumer.Retry.Budget, 15 * time.Second},
		{"retry.max_attempts", c.Consumer.Retry.MaxAttempts, 4},
		{"retry.throttle_multiplier", c.Consumer.Retry.ThrottleMultiplier, 4.0},
		{"retry.redelivery_base", c.Consumer.Retry.RedeliveryBase, 5 * time.Second},
		{"retry.redelivery_max", c.Consumer.Retry.RedeliveryMax, 10 * time.Minute},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:9090"},
		{"log.level", c.Log.Level, "info"},
		{"log.development", c.Log.Development, false},
		{"accounts", len(c.Accounts), 0},
	}
	for _, tc := range checks {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

func TestLoadExample(t *testing.T) {
	c, err := Load("../../examples/consumer.yaml", env(nil))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	// Its defaults: TestTheExampleIsTheReference.
	if len(c.Accounts) != 2 {
		t.Fatalf("accounts = %v, want default and brand-b", c.Accounts)
	}
	v := c.Accounts["default"].Volcengine
	if v == nil || v.AccessKeyIDEnv != "VOLC_ACCESS_KEY_ID" || v.SecretAccessKeyEnv != "VOLC_SECRET_ACCESS_KEY" ||
		v.Region != "cn-north-1" || v.Timeout != 10*time.Second {
		t.Errorf("default.volcengine = %+v", v)
	}
	dy := c.Accounts["default"].Douyin
	if dy == nil || dy.AppID != "tt0123456789abcdef" || dy.AppSecretFile != "/run/secrets/douyin_app_secret" ||
		dy.BaseURL != douyin.ProductionBaseURL {
		t.Errorf("default.douyin = %+v", dy)
	}
	b := c.Accounts["brand-b"]
	if b.Douyin != nil || b.Volcengine == nil || b.Volcengine.AccessKeyID != "AKLTexampleexampleexample" ||
		b.Volcengine.VMSEndpoint != volcengine.DefaultVMSEndpoint || b.Volcengine.SMSEndpoint != volcengine.DefaultSMSEndpoint {
		t.Errorf("brand-b = %+v / %+v", b.Volcengine, b.Douyin)
	}
}

func TestLoadYAML(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		wantErr []string // substrings; nil means no error
		check   func(t *testing.T, c *Config)
	}{
		{name: "empty file", yaml: "", check: func(t *testing.T, c *Config) {
			if !reflect.DeepEqual(c, Default()) {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "durations", yaml: "consumer:\n  ack_wait: 90s\n  shutdown_grace: 1m30s\nstreams:\n  results_max_age: 720h\n", check: func(t *testing.T, c *Config) {
			if c.Consumer.AckWait != 90*time.Second || c.Consumer.ShutdownGrace != 90*time.Second || c.Streams.ResultsMaxAge != 720*time.Hour {
				t.Errorf("got %+v %+v", c.Consumer, c.Streams)
			}
		}},
		{name: "ledger max age", yaml: "ledger:\n  max_age: 1440h\n", check: func(t *testing.T, c *Config) {
			if c.Ledger.MaxAge != 1440*time.Hour {
				t.Errorf("ledger.max_age = %s", c.Ledger.MaxAge)
			}
		}},
		{name: "ledger max age within the duplicate window", yaml: "ledger:\n  max_age: 12h\n", wantErr: []string{"ledger.max_age", "streams.duplicate_window"}},
		{name: "health watch", yaml: "nats:\n  health:\n    interval: 1s\n    timeout: 500ms\n    failures: 5\n", check: func(t *testing.T, c *Config) {
			if h := c.NATS.Health; h.Interval != time.Second || h.Timeout != 500*time.Millisecond || h.Failures != 5 {
				t.Errorf("nats.health = %+v", h)
			}
		}},
		{name: "bare number is not a duration", yaml: "consumer:\n  ack_wait: 60\n", wantErr: []string{"consumer.ack_wait: must be a duration", `not "60"`}},
		{name: "admin disabled", yaml: "admin:\n  listen: \"\"\n", check: func(t *testing.T, c *Config) {
			if c.Admin.Listen != "" {
				t.Errorf("admin.listen = %q, want disabled", c.Admin.Listen)
			}
		}},
		{name: "jitter off", yaml: "consumer:\n  retry:\n    jitter: 0\n", check: func(t *testing.T, c *Config) {
			if p := c.RetryPolicy(); !p.NoJitter {
				t.Errorf("policy %+v, want NoJitter", p)
			}
		}},
		{name: "explicit zero takes the default", yaml: "consumer:\n  concurrency: 0\n", check: func(t *testing.T, c *Config) {
			if c.Consumer.Concurrency != 64 {
				t.Errorf("concurrency = %d", c.Consumer.Concurrency)
			}
		}},
		{name: "unknown top-level key", yaml: "natz:\n  url: nats://x\n", wantErr: []string{"natz: unknown key natz"}},
		{name: "literal secret access key", yaml: "accounts:\n  a:\n    volcengine:\n      access_key_id: AK\n      secret_access_key: TOPSECRETVALUE\n",
			wantErr: []string{"unknown key secret_access_key", "secret_access_key_env", "secret_access_key_file"}},
		{name: "literal app secret", yaml: "accounts:\n  a:\n    douyin:\n      app_id: tt1\n      app_secret: TOPSECRETVALUE\n",
			wantErr: []string{"unknown key app_secret", "app_secret_env"}},
		{name: "literal nats password", yaml: "nats:\n  user: u\n  password: TOPSECRETVALUE\n", wantErr: []string{"nats.password: unknown key password"}},
		{name: "problems named by key, all of them", yaml: "nats:\n  ulr: x\nconsumer:\n  concurrency: many\n  ack_wait: 5\n  max_deliver: -3\n",
			wantErr: []string{"nats.ulr: unknown key ulr (line 2)", `consumer.concurrency: must be an integer, not "many" (line 4)`,
				`consumer.ack_wait: must be a duration such as "30s"`, "consumer.max_deliver: must be at least 1"}},
		{name: "insecure_skip_verify is not offered", yaml: "nats:\n  tls:\n    insecure_skip_verify: true\n", wantErr: []string{"nats.tls.insecure_skip_verify: unknown key insecure_skip_verify"}},
		{name: "two documents", yaml: "log:\n  level: info\n---\nlog:\n  level: debug\n", wantErr: []string{"more than one YAML document"}},
		{name: "not YAML", yaml: "nats: [\n", wantErr: []string{"yaml"}},
		{name: "validation runs", yaml: "consumer:\n  concurrency: -1\nlog:\n  level: loud\n", wantErr: []string{"consumer.concurrency", "log.level"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, "consumer.yaml", tc.yaml)
			c, err := Load(path, env(nil))
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				tc.check(t, c)
				return
			}
			if err == nil {
				t.Fatalf("Load = %+v, want an error", c)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "TOPSECRETVALUE") {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"), env(nil))
	if !errors.Is(err, ErrInvalidConfig) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("err = %v", err)
	}
}

func TestEnvOverrides(t *testing.T) {
	path := writeFile(t, "c.yaml", "nats:\n  url: nats://from-file:4222\nconsumer:\n  concurrency: 8\nlog:\n  level: warn\n")
	c, err := Load(path, env(map[string]string{
		"QUALFILE_NATS_URL":        "nats://from-env:4222",
		"QUALFILE_NATS_CREDS":      "/etc/q.creds",
		"QUALFILE_CONCURRENCY":     "12",
		"QUALFILE_ADMIN_LISTEN":    "127.0.0.1:9999",
		"QUALFILE_LOG_LEVEL":       "debug",
		"QUALFILE_LOG_DEVELOPMENT": "true",
		"QUALFILE_SUBJECT_PREFIX":  "acme.filing",
		"QUALFILE_STORE_DIR":       "/var/lib/qualfile",
		"QUALFILE_ACK_WAIT":        "2m",
		"QUALFILE_STREAM_REPLICAS": "3",
		"QUALFILE_LEDGER_MAX_AGE":  "1440h",
	}))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for _, tc := range []struct {
		name      string
		got, want any
	}{
		{"nats.url", c.NATS.URL, "nats://from-env:4222"},
		{"nats.creds_file", c.NATS.CredsFile, "/etc/q.creds"},
		{"consumer.concurrency", c.Consumer.Concurrency, 12},
		{"admin.listen", c.Admin.Listen, "127.0.0.1:9999"},
		{"log.level", c.Log.Level, "debug"},
		{"log.development", c.Log.Development, true},
		{"subjects.prefix", c.Subjects.Prefix, "acme.filing"},
		{"embedded.store_dir", c.Embedded.StoreDir, "/var/lib/qualfile"},
		{"consumer.ack_wait", c.Consumer.AckWait, 2 * time.Minute},
		{"streams.replicas", c.Streams.Replicas, 3},
		{"ledger.max_age", c.Ledger.MaxAge, 1440 * time.Hour},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}

	// Bad values: every one is reported, by its variable.
	_, err = Load("", env(map[string]string{"QUALFILE_CONCURRENCY": "many", "QUALFILE_ACK_WAIT": "soon", "QUALFILE_LOG_DEVELOPMENT": "maybe", "QUALFILE_LEDGER_MAX_AGE": "a month"}))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("err = %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{"QUALFILE_CONCURRENCY", "QUALFILE_ACK_WAIT", "QUALFILE_LOG_DEVELOPMENT", "QUALFILE_LEDGER_MAX_AGE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}

	// Overrides are validated too.
	_, err = Load("", env(map[string]string{"QUALFILE_SUBJECT_PREFIX": "bad prefix"}))
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "subjects.prefix") {
		t.Errorf("err = %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(c *Config)
		wantErr []string // keys named; nil means valid
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "nats url list", mutate: func(c *Config) { c.NATS.URL = "nats://a:4222, tls://b:4222,c:4222" }},
		{name: "nats url with password", mutate: func(c *Config) { c.NATS.URL = "nats://u:hunter2@a:4222" }, wantErr: []string{"nats.url", "must not contain credentials"}},
		{name: "nats url bad scheme", mutate: func(c *Config) { c.NATS.URL = "http://a:4222" }, wantErr: []string{"nats.url"}},
		{name: "nats url empty entry", mutate: func(c *Config) { c.NATS.URL = "nats://a:4222,," }, wantErr: []string{"nats.url"}},
		{name: "creds and nkey", mutate: func(c *Config) { c.NATS.CredsFile, c.NATS.NkeyFile = "a", "b" }, wantErr: []string{"nats.nkey_file"}},
		{name: "user without password_env", mutate: func(c *Config) { c.NATS.User = "u" }, wantErr: []string{"nats.password_env"}},
		{name: "password_env without user", mutate: func(c *Config) { c.NATS.PasswordEnv = "P" }, wantErr: []string{"nats.user"}},
		{name: "password_env holds a password", mutate: func(c *Config) { c.NATS.User, c.NATS.PasswordEnv = "u", "s3cr3t!pw" }, wantErr: []string{"nats.password_env", "not the secret itself"}},
		{name: "tls cert without key", mutate: func(c *Config) { c.NATS.TLS.CertFile = "c.pem" }, wantErr: []string{"nats.tls"}},
		{name: "connect timeout", mutate: func(c *Config) { c.NATS.ConnectTimeout = -time.Second }, wantErr: []string{"nats.connect_timeout"}},
		{name: "health watch", mutate: func(c *Config) {
			c.NATS.Health.Interval, c.NATS.Health.Timeout, c.NATS.Health.Failures = 0, -time.Second, -1
		}, wantErr: []string{"nats.health.interval", "nats.health.timeout", "nats.health.failures"}},
		{name: "embedded non-loopback", mutate: func(c *Config) { c.Embedded.Listen = "0.0.0.0:4222" }, wantErr: []string{"embedded.listen", "loopback"}},
		{name: "embedded all interfaces", mutate: func(c *Config) { c.Embedded.Listen = ":4222" }, wantErr: []string{"embedded.listen"}},
		{name: "embedded localhost ok", mutate: func(c *Config) { c.Embedded.Listen = "localhost:4222" }},
		{name: "embedded ipv6 loopback ok", mutate: func(c *Config) { c.Embedded.Listen = "[::1]:0" }},
		{name: "embedded bad port", mutate: func(c *Config) { c.Embedded.Listen = "127.0.0.1:99999" }, wantErr: []string{"embedded.listen"}},
		{name: "store dir", mutate: func(c *Config) { c.Embedded.StoreDir = "" }, wantErr: []string{"embedded.store_dir"}},
		{name: "prefix wildcard", mutate: func(c *Config) { c.Subjects.Prefix = "filing.>" }, wantErr: []string{"subjects.prefix"}},
		{name: "prefix dotted ok", mutate: func(c *Config) { c.Subjects.Prefix = "acme.filing-v2" }},
		{name: "prefix empty token", mutate: func(c *Config) { c.Subjects.Prefix = "acme..filing" }, wantErr: []string{"subjects.prefix"}},
		{name: "replicas", mutate: func(c *Config) { c.Streams.Replicas = 7 }, wantErr: []string{"streams.replicas"}},
		{name: "negative ages", mutate: func(c *Config) { c.Streams.AuditMaxAge, c.Streams.DeadMaxAge = -1, -1 }, wantErr: []string{"streams.audit_max_age", "streams.dead_max_age"}},
		{name: "duplicate window", mutate: func(c *Config) { c.Streams.DuplicateWindow = 0 }, wantErr: []string{"streams.duplicate_window"}},
		{name: "ledger max age longer than the duplicate window", mutate: func(c *Config) { c.Ledger.MaxAge = 25 * time.Hour }},
		{name: "ledger max age zero", mutate: func(c *Config) { c.Ledger.MaxAge = 0 }, wantErr: []string{"ledger.max_age", "positive"}},
		{name: "ledger max age negative", mutate: func(c *Config) { c.Ledger.MaxAge = -time.Hour }, wantErr: []string{"ledger.max_age", "positive"}},
		{name: "ledger max age equal to the duplicate window", mutate: func(c *Config) { c.Ledger.MaxAge = 24 * time.Hour },
			wantErr: []string{"ledger.max_age", "streams.duplicate_window"}},
		{name: "ledger max age shorter than the duplicate window", mutate: func(c *Config) { c.Ledger.MaxAge = time.Hour },
			wantErr: []string{"ledger.max_age", "streams.duplicate_window"}},
		{name: "duplicate window raised past the ledger", mutate: func(c *Config) { c.Streams.DuplicateWindow = 1000 * time.Hour },
			wantErr: []string{"ledger.max_age", "streams.duplicate_window (1000h0m0s)"}},
		{name: "durable", mutate: func(c *Config) { c.Consumer.Durable = "q.f" }, wantErr: []string{"consumer.durable"}},
		{name: "reply_to prefixes", mutate: func(c *Config) {
			c.Consumer.ReplyTo = []string{"_INBOX.crm", "filing", "filing.result", "$JS", "a.>", "_INBOX.filing", "_INBOX.filing.consumer.x", "_INBOX.filing.tenant.acme"}
		}, wantErr: []string{"consumer.reply_to[1]", "consumer.reply_to[2]", "consumer.reply_to[3]", "consumer.reply_to[4]", "qualfile's own subjects",
			"consumer.reply_to[5]", "consumer.reply_to[6]", "consumer.reply_to[7]", "another role"}},
		{name: "an account's tenant", mutate: func(c *Config) {
			c.Accounts = map[string]Account{"a": {Tenant: "Acme"}, "b": {Tenant: "vms"}, "c": {Tenant: "acme"}}
		}, wantErr: []string{"accounts.a.tenant", "accounts.b.tenant"}},
		{name: "consumer numbers", mutate: func(c *Config) {
			c.Consumer.Concurrency, c.Consumer.MaxDeliver, c.Consumer.FetchBatch = 0, 0, 0
			c.Consumer.AckWait, c.Consumer.ShutdownGrace, c.Consumer.CallTimeout = 10*time.Millisecond, -1, time.Millisecond
		}, wantErr: []string{"consumer.concurrency", "consumer.max_deliver", "consumer.fetch_batch", "consumer.ack_wait", "consumer.shutdown_grace", "consumer.call_timeout"}},
		{name: "retry", mutate: func(c *Config) {
			r := &c.Consumer.Retry
			r.Multiplier, r.Jitter, r.MaxAttempts = 0.5, 1.5, 0
			r.MaxInterval, r.RedeliveryMax = time.Millisecond, time.Second
		}, wantErr: []string{"consumer.retry.multiplier", "consumer.retry.jitter", "consumer.retry.max_attempts",
			"consumer.retry.max_interval", "consumer.retry.redelivery_max"}},
		{name: "admin", mutate: func(c *Config) { c.Admin.Listen = "9090" }, wantErr: []string{"admin.listen"}},
		{name: "admin disabled", mutate: func(c *Config) { c.Admin.Listen = "" }},
		{name: "log level", mutate: func(c *Config) { c.Log.Level = "verbose" }, wantErr: []string{"log.level"}},
		{name: "log level any case", mutate: func(c *Config) { c.Log.Level = "DEBUG" }},
		{name: "account ok", mutate: func(c *Config) {
			c.Accounts = map[string]Account{"acme": {
				Volcengine: &VolcengineAccount{AccessKeyID: "AK", SecretAccessKeyFile: "/s"},
				Douyin:     &DouyinAccount{AppID: "tt", AppSecretEnv: "DY_SECRET", BaseURL: douyin.SandboxBaseURL, CheckType: "OK"},
			}}
			c.applyDefaults()
		}},
		{name: "account empty", mutate: func(c *Config) { c.Accounts = map[string]Account{"acme": {}} }, wantErr: []string{"accounts.acme", "neither"}},
		{name: "account name", mutate: func(c *Config) {
			c.Accounts = map[string]Account{"a b": {Douyin: &DouyinAccount{AppID: "tt"}}}
			c.applyDefaults()
		}, wantErr: []string{"accounts.a b"}},
		{name: "volcengine conflicts", mutate: func(c *Config) {
			c.Accounts = map[string]Account{"acme": {Volcengine: &VolcengineAccount{
				AccessKeyID: "AK", AccessKeyIDEnv: "AK_ENV", SecretAccessKeyEnv: "SK", SecretAccessKeyFile: "/sk",
				SessionTokenEnv: "T", SessionTokenFile: "/t",
			}}}
			c.applyDefaults()
		}, wantErr: []string{"accounts.acme.volcengine.access_key_id_env", "accounts.acme.volcengine.secret_access_key_file",
			"accounts.acme.volcengine.session_token_file"}},
		{name: "volcengine secret pasted into _env", mutate: func(c *Config) {
			c.Accounts = map[string]Account{"acme": {Volcengine: &VolcengineAccount{SecretAccessKeyEnv: "TOPSECRET/VALUE=="}}}
			c.applyDefaults()
		}, wantErr: []string{"accounts.acme.volcengine.secret_access_key_env", "not the secret itself"}},
		{name: "volcengine endpoints and region", mutate: func(c *Config) {
			c.Accounts = map[string]Account{"acme": {Volcengine: &VolcengineAccount{
				Region: "cn north", VMSEndpoint: "ftp://x", SMSEndpoint: "https://u:p@sms", Timeout: -1,
			}}}
			c.applyDefaults()
		}, wantErr: []string{"accounts.acme.volcengine.region", "accounts.acme.volcengine.vms_endpoint",
			"accounts.acme.volcengine.sms_endpoint", "accounts.acme.volcengine.timeout"}},
		{name: "douyin check type", mutate: func(c *Config) {
			c.Accounts = map[string]Account{
				"prod":  {Douyin: &DouyinAccount{AppID: "tt", CheckType: "OK"}},
				"weird": {Douyin: &DouyinAccount{AppID: "tt", BaseURL: douyin.SandboxBaseURL, CheckType: "MAYBE"}},
			}
			c.applyDefaults()
		}, wantErr: []string{"accounts.prod.douyin.check_type", "accounts.weird.douyin.check_type"}},
		{name: "douyin secret conflict and base url", mutate: func(c *Config) {
			c.Accounts = map[string]Account{"acme": {Douyin: &DouyinAccount{AppSecretEnv: "A", AppSecretFile: "/b", BaseURL: "developer.toutiao.com"}}}
			c.applyDefaults()
		}, wantErr: []string{"accounts.acme.douyin.app_secret_file", "accounts.acme.douyin.base_url"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mutate(c)
			err := c.Validate()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate = nil, want an error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %v does not match ErrInvalidConfig", err)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v holds no *FieldError", err)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
			for _, secret := range []string{"hunter2", "s3cr3t!pw", "TOPSECRET/VALUE=="} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q repeats a secret", err)
				}
			}
		})
	}
}

// TestValidateJoinsAll checks that every problem is reported, one
// *FieldError each, and that Validate can be called again after flags.
func TestValidateJoinsAll(t *testing.T) {
	c := Default()
	c.Consumer.Concurrency = -1
	c.Log.Level = "loud"
	c.Streams.Replicas = 0
	err := c.Validate()
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok || len(joined.Unwrap()) != 3 {
		t.Fatalf("err = %v, want three joined problems", err)
	}
	c.Consumer.Concurrency, c.Log.Level, c.Streams.Replicas = 8, "info", 3
	if err := c.Validate(); err != nil {
		t.Errorf("after fixing: %v", err)
	}
}

func TestRetryPolicy(t *testing.T) {
	p := Default().RetryPolicy()
	want := retry.Policy{
		InitialInterval:     retry.DefaultInitialInterval,
		Multiplier:          retry.DefaultMultiplier,
		MaxInterval:         retry.DefaultMaxInterval,
		RandomizationFactor: retry.DefaultRandomizationFactor,
		MaxElapsedTime:      retry.DefaultMaxElapsedTime,
		MaxAttempts:         retry.DefaultMaxAttempts,
		ThrottleMultiplier:  retry.DefaultThrottleMultiplier,
		MaxThrottleInterval: retry.DefaultMaxThrottleInterval,
		RedeliveryBase:      retry.DefaultRedeliveryBase,
		RedeliveryMax:       retry.DefaultRedeliveryMax,
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("RetryPolicy() = %+v, want %+v", p, want)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("policy invalid: %v", err)
	}
	c := Default()
	c.Consumer.Retry.Jitter = 0
	c.Consumer.Retry.MaxAttempts = 7
	if p := c.RetryPolicy(); !p.NoJitter || p.MaxAttempts != 7 {
		t.Errorf("RetryPolicy() = %+v, want NoJitter and 7 attempts", p)
	}
}

func TestReconcileSettings(t *testing.T) {
	c := Default()
	if r := c.Reconcile; !r.Enabled || !r.Refile || r.Window != 30*time.Second || r.Reads != 4 {
		t.Errorf("defaults %+v: want on, refiling, 30s, 4 reads", r)
	}
	path := writeFile(t, "consumer.yaml", "reconcile:\n  enabled: false\n  refile: false\n  window: 1m\n")
	c, err := Load(path, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Reconcile; r.Enabled || r.Refile || r.Window != time.Minute || r.Reads != 4 {
		t.Errorf("from YAML %+v", r)
	}
	c, err = Load(path, env(map[string]string{"QUALFILE_RECONCILE": "true", "QUALFILE_RECONCILE_REFILE": "true", "QUALFILE_RECONCILE_WINDOW": "10s"}))
	if err != nil {
		t.Fatal(err)
	}
	if r := c.Reconcile; !r.Enabled || !r.Refile || r.Window != 10*time.Second {
		t.Errorf("from the environment %+v", r)
	}
	bad := writeFile(t, "bad.yaml", "reconcile:\n  window: 2h\n  reads: 101\n")
	_, err = Load(bad, env(nil))
	for _, key := range []string{"reconcile.window", "reconcile.reads"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("error %v: want it to name %s", err, key)
		}
	}
}
