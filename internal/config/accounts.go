package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
	"github.com/qualfile/qualfile/messages"
)

// Redacted replaces a secret wherever a resolved account is formatted.
const Redacted = "[REDACTED]"

// ResolvedAccount is an account with its secrets read.
type ResolvedAccount struct {
	// Name is the account name requests refer to.
	Name string
	// Volcengine is nil when the account has no Volcengine key.
	Volcengine *ResolvedVolcengine
	// Douyin is nil when the account has no Douyin app.
	Douyin *ResolvedDouyin
}

// ResolvedVolcengine is a Volcengine access key with its settings. Its
// String, GoString, Format, MarshalJSON and LogValue methods redact the
// secret access key and session token, so printing or logging it (fmt's
// %v, %+v, %#v, %s, zap.Any, slog) never shows them.
type ResolvedVolcengine struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	Region          string
	VMSEndpoint     string
	SMSEndpoint     string
	Timeout         time.Duration
}

// ResolvedDouyin is a Douyin app with its settings. Its String, GoString,
// Format, MarshalJSON and LogValue methods redact the app secret.
type ResolvedDouyin struct {
	AppID     string
	AppSecret string
	BaseURL   string
	Timeout   time.Duration
	CheckType string
}

// redact hides a secret but shows whether there is one.
func redact(s string) string {
	if s == "" {
		return ""
	}
	return Redacted
}

// String implements fmt.Stringer with the secrets redacted.
func (v ResolvedVolcengine) String() string {
	return fmt.Sprintf("{AccessKeyID:%s SecretAccessKey:%s SessionToken:%s Region:%s VMSEndpoint:%s SMSEndpoint:%s Timeout:%s}",
		v.AccessKeyID, redact(v.SecretAccessKey), redact(v.SessionToken), v.Region, v.VMSEndpoint, v.SMSEndpoint, v.Timeout)
}

// GoString implements fmt.GoStringer with the secrets redacted.
func (v ResolvedVolcengine) GoString() string {
	return fmt.Sprintf("config.ResolvedVolcengine{AccessKeyID:%q, SecretAccessKey:%q, SessionToken:%q, Region:%q, VMSEndpoint:%q, SMSEndpoint:%q, Timeout:%d}",
		v.AccessKeyID, redact(v.SecretAccessKey), redact(v.SessionToken), v.Region, v.VMSEndpoint, v.SMSEndpoint, int64(v.Timeout))
}

// Format implements fmt.Formatter so that every verb (%v, %+v, %#v, %s,
// %q, %x, …) prints the redacted form.
func (v ResolvedVolcengine) Format(f fmt.State, verb rune) { format(f, verb, v) }

// MarshalJSON implements json.Marshaler (used by zap's reflection encoder)
// with the secrets redacted.
func (v ResolvedVolcengine) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{
		"AccessKeyID":     v.AccessKeyID,
		"SecretAccessKey": redact(v.SecretAccessKey),
		"SessionToken":    redact(v.SessionToken),
		"Region":          v.Region,
		"VMSEndpoint":     v.VMSEndpoint,
		"SMSEndpoint":     v.SMSEndpoint,
		"Timeout":         v.Timeout.String(),
	})
}

// LogValue implements slog.LogValuer with the secrets redacted.
func (v ResolvedVolcengine) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("access_key_id", v.AccessKeyID),
		slog.String("secret_access_key", redact(v.SecretAccessKey)),
		slog.String("session_token", redact(v.SessionToken)),
		slog.String("region", v.Region),
		slog.String("vms_endpoint", v.VMSEndpoint),
		slog.String("sms_endpoint", v.SMSEndpoint),
		slog.Duration("timeout", v.Timeout),
	)
}

// String implements fmt.Stringer with the app secret redacted.
func (d ResolvedDouyin) String() string {
	return fmt.Sprintf("{AppID:%s AppSecret:%s BaseURL:%s Timeout:%s CheckType:%s}",
		d.AppID, redact(d.AppSecret), d.BaseURL, d.Timeout, d.CheckType)
}

// GoString implements fmt.GoStringer with the app secret redacted.
func (d ResolvedDouyin) GoString() string {
	return fmt.Sprintf("config.ResolvedDouyin{AppID:%q, AppSecret:%q, BaseURL:%q, Timeout:%d, CheckType:%q}",
		d.AppID, redact(d.AppSecret), d.BaseURL, int64(d.Timeout), d.CheckType)
}

// Format implements fmt.Formatter so that every verb prints the redacted
// form.
func (d ResolvedDouyin) Format(f fmt.State, verb rune) { format(f, verb, d) }

// MarshalJSON implements json.Marshaler with the app secret redacted.
func (d ResolvedDouyin) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{
		"AppID":     d.AppID,
		"AppSecret": redact(d.AppSecret),
		"BaseURL":   d.BaseURL,
		"Timeout":   d.Timeout.String(),
		"CheckType": d.CheckType,
	})
}

// LogValue implements slog.LogValuer with the app secret redacted.
func (d ResolvedDouyin) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("app_id", d.AppID),
		slog.String("app_secret", redact(d.AppSecret)),
		slog.String("base_url", d.BaseURL),
		slog.Duration("timeout", d.Timeout),
		slog.String("check_type", d.CheckType),
	)
}

// redactedFormatter is what format needs of a resolved value.
type redactedFormatter interface {
	String() string
	GoString() string
}

// format prints the redacted form for any verb: GoString for %#v, a quoted
// String for %q, String otherwise.
func format(f fmt.State, verb rune, v redactedFormatter) {
	switch {
	case verb == 'v' && f.Flag('#'):
		_, _ = io.WriteString(f, v.GoString())
	case verb == 'q':
		_, _ = io.WriteString(f, strconv.Quote(v.String()))
	default:
		_, _ = io.WriteString(f, v.String())
	}
}

// ResolveAccounts reads every account's secrets: from the environment
// (getenv) for *_env keys, from files (readFile, e.g. os.ReadFile) for
// *_file keys, file contents trimmed of surrounding white space. It returns
// ErrNoAccounts when there are none, and otherwise every account that could
// not be resolved, joined: a *SecretError (ErrMissingSecret) naming the
// account and the key, never the value.
func (c *Config) ResolveAccounts(getenv func(string) string, readFile func(string) ([]byte, error)) (map[string]ResolvedAccount, error) {
	if len(c.Accounts) == 0 {
		return nil, fmt.Errorf("config: %w: add at least one entry under accounts (or run with the sandbox)", ErrNoAccounts)
	}
	r := resolver{getenv: getenv, readFile: readFile}
	out := make(map[string]ResolvedAccount, len(c.Accounts))
	for _, name := range slices.Sorted(maps.Keys(c.Accounts)) {
		a := c.Accounts[name]
		r.account = name
		ra := ResolvedAccount{Name: name}
		if v := a.Volcengine; v != nil {
			ra.Volcengine = &ResolvedVolcengine{
				AccessKeyID: r.value("volcengine.access_key_id", v.AccessKeyID, "volcengine.access_key_id_env", v.AccessKeyIDEnv,
					"volcengine.access_key_id_file", v.AccessKeyIDFile, true),
				SecretAccessKey: r.value("volcengine.secret_access_key", "", "volcengine.secret_access_key_env", v.SecretAccessKeyEnv,
					"volcengine.secret_access_key_file", v.SecretAccessKeyFile, true),
				SessionToken: r.value("volcengine.session_token", "", "volcengine.session_token_env", v.SessionTokenEnv,
					"volcengine.session_token_file", v.SessionTokenFile, false),
				Region:      orDefault(v.Region, DefaultRegion),
				VMSEndpoint: orDefault(v.VMSEndpoint, volcengine.DefaultVMSEndpoint),
				SMSEndpoint: orDefault(v.SMSEndpoint, volcengine.DefaultSMSEndpoint),
				Timeout:     orDefaultD(v.Timeout, DefaultVolcengineTimeout),
			}
		}
		if d := a.Douyin; d != nil {
			if d.AppID == "" {
				r.errs = append(r.errs, &SecretError{Account: name, Key: "douyin.app_id", Problem: "is required"})
			}
			ra.Douyin = &ResolvedDouyin{
				AppID: d.AppID,
				AppSecret: r.value("douyin.app_secret", "", "douyin.app_secret_env", d.AppSecretEnv,
					"douyin.app_secret_file", d.AppSecretFile, true),
				BaseURL:   orDefault(d.BaseURL, douyin.ProductionBaseURL),
				Timeout:   orDefaultD(d.Timeout, DefaultDouyinTimeout),
				CheckType: d.CheckType,
			}
		}
		out[name] = ra
	}
	if len(r.errs) > 0 {
		return nil, errors.Join(r.errs...)
	}
	return out, nil
}

// resolver reads secrets and collects what it could not read.
type resolver struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	account  string
	errs     []error
}

// value returns the literal, or the named environment variable, or the
// named file's trimmed contents. Validate has made sure at most one is set.
// A required value that has no source, or whose source is unset or empty,
// is an error.
func (r *resolver) value(key, literal, envKey, env, fileKey, file string, required bool) string {
	switch {
	case literal != "":
		return literal
	case env != "":
		if r.getenv == nil {
			r.fail(envKey, fmt.Sprintf("environment variable %q cannot be read (no getenv)", env), nil)
			return ""
		}
		s := strings.TrimSpace(r.getenv(env))
		if s == "" {
			r.fail(envKey, fmt.Sprintf("environment variable %q is not set or empty", env), nil)
		}
		return s
	case file != "":
		if r.readFile == nil {
			r.fail(fileKey, fmt.Sprintf("file %q cannot be read (no readFile)", file), nil)
			return ""
		}
		b, err := r.readFile(file)
		if err != nil {
			// The error of os.ReadFile names the path and the cause; it
			// never holds the contents.
			r.fail(fileKey, "cannot read the file", err)
			return ""
		}
		s := strings.TrimSpace(string(b))
		if s == "" {
			r.fail(fileKey, fmt.Sprintf("file %q is empty", file), nil)
		}
		return s
	}
	if required {
		r.fail(key, fmt.Sprintf("is required: set %s or %s", envKey, fileKey), nil)
	}
	return ""
}

func (r *resolver) fail(key, problem string, err error) {
	r.errs = append(r.errs, &SecretError{Account: r.account, Key: key, Problem: problem, Err: err})
}

// WithSandbox returns the accounts to use with the built-in vendor
// simulator at url: one for every configured account name plus "default",
// each with both vendors, every endpoint and base URL set to url and the
// sandbox credentials given, whatever credentials the configuration names
// (no secret is read). Region, timeouts and Douyin check_type are taken
// from the configured account where it has them.
func (c *Config) WithSandbox(url, accessKeyID, secretAccessKey, appID, appSecret string) map[string]ResolvedAccount {
	out := make(map[string]ResolvedAccount, len(c.Accounts)+1)
	add := func(name string, a Account) {
		v := ResolvedVolcengine{
			AccessKeyID:     accessKeyID,
			SecretAccessKey: secretAccessKey,
			Region:          DefaultRegion,
			VMSEndpoint:     url,
			SMSEndpoint:     url,
			Timeout:         DefaultVolcengineTimeout,
		}
		if a.Volcengine != nil {
			v.Region = orDefault(a.Volcengine.Region, DefaultRegion)
			v.Timeout = orDefaultD(a.Volcengine.Timeout, DefaultVolcengineTimeout)
		}
		d := ResolvedDouyin{AppID: appID, AppSecret: appSecret, BaseURL: url, Timeout: DefaultDouyinTimeout}
		if a.Douyin != nil {
			d.Timeout = orDefaultD(a.Douyin.Timeout, DefaultDouyinTimeout)
			d.CheckType = a.Douyin.CheckType
		}
		out[name] = ResolvedAccount{Name: name, Volcengine: &v, Douyin: &d}
	}
	for name, a := range c.Accounts {
		add(name, a)
	}
	if _, ok := out[messages.DefaultAccount]; !ok {
		add(messages.DefaultAccount, Account{})
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orDefaultD(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// Clients makes the vendor clients of every resolved account. Douyin
// tokens go through tokens, a store shared by all replicas (see tokenkv),
// so that they use one token per appid. Every client sends through hc (see
// dispatch.NewHTTPClient); nil gives each its package's default.
func Clients(accounts map[string]ResolvedAccount, tokens douyin.TokenStore, hc *http.Client) (map[string]dispatch.Account, error) {
	out := make(map[string]dispatch.Account, len(accounts))
	for name, a := range accounts {
		var acct dispatch.Account
		if v := a.Volcengine; v != nil {
			creds := volcengine.Credentials{AccessKeyID: v.AccessKeyID, SecretAccessKey: v.SecretAccessKey, SessionToken: v.SessionToken}
			vms, err := volcengine.NewVMS(volcengine.Config{Endpoint: v.VMSEndpoint, Region: v.Region, Credentials: creds, Timeout: v.Timeout, HTTPClient: hc})
			if err != nil {
				return nil, fmt.Errorf("account %s: %w", name, err)
			}
			sms, err := volcengine.NewSMS(volcengine.Config{Endpoint: v.SMSEndpoint, Region: v.Region, Credentials: creds, Timeout: v.Timeout, HTTPClient: hc})
			if err != nil {
				return nil, fmt.Errorf("account %s: %w", name, err)
			}
			acct.VMS, acct.SMS = vms, sms
		}
		if d := a.Douyin; d != nil {
			src := &douyin.TokenSource{AppID: d.AppID, Secret: d.AppSecret, BaseURL: d.BaseURL, Store: tokens, Timeout: d.Timeout, HTTPClient: hc}
			c, err := douyin.New(douyin.Config{BaseURL: d.BaseURL, AppID: d.AppID, Tokens: src, Timeout: d.Timeout, CheckType: d.CheckType, HTTPClient: hc})
			if err != nil {
				return nil, fmt.Errorf("account %s: %w", name, err)
			}
			acct.Douyin = c
		}
		out[name] = acct
	}
	return out, nil
}
