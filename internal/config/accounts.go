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
	// Tenant owns it ("": the default tenant).
	Tenant string
	// Volcengine is nil when the account has no Volcengine key.
	Volcengine *ResolvedVolcengine
	// Douyin is nil when the account has no Douyin app.
	Douyin *ResolvedDouyin
}

// ResolvedVolcengine is a Volcengine access key with its settings; its
// secrets are Secrets.
type ResolvedVolcengine struct {
	AccessKeyID     string
	SecretAccessKey Secret
	SessionToken    Secret
	Region          string
	VMSEndpoint     string
	SMSEndpoint     string
	Timeout         time.Duration
}

// ResolvedDouyin is a Douyin app with its settings; its secret is a Secret.
type ResolvedDouyin struct {
	AppID     string
	AppSecret Secret
	BaseURL   string
	Timeout   time.Duration
	CheckType string
}

// Secret is a resolved secret. Its String, GoString, Format, MarshalJSON
// and LogValue methods show Redacted (nothing when it is empty), so printing
// or logging it, or a struct holding it (fmt's %v, %+v, %#v, %s, zap.Any,
// slog), never shows it; string(s) is the value.
type Secret string

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString implements fmt.GoStringer.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// Format implements fmt.Formatter so that every verb (%v, %#v, %q, %x, …)
// prints the redacted form.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'), verb == 'q':
		_, _ = io.WriteString(f, s.GoString())
	default:
		_, _ = io.WriteString(f, s.String())
	}
}

// MarshalJSON implements json.Marshaler (used by zap's reflection encoder).
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue implements slog.LogValuer.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// The plain types print field by field, each Secret redacted; String uses
// them so that a resolved account printed inside another value (behind a
// pointer, in a map) still shows its settings.
type (
	plainVolcengine ResolvedVolcengine
	plainDouyin     ResolvedDouyin
)

func (v ResolvedVolcengine) String() string { return fmt.Sprintf("%+v", plainVolcengine(v)) }
func (d ResolvedDouyin) String() string     { return fmt.Sprintf("%+v", plainDouyin(d)) }

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
		ra := ResolvedAccount{Name: name, Tenant: a.Tenant}
		if v := a.Volcengine; v != nil {
			ra.Volcengine = &ResolvedVolcengine{
				AccessKeyID:     r.value("volcengine.access_key_id", v.AccessKeyID, v.AccessKeyIDEnv, v.AccessKeyIDFile, true),
				SecretAccessKey: Secret(r.value("volcengine.secret_access_key", "", v.SecretAccessKeyEnv, v.SecretAccessKeyFile, true)),
				SessionToken:    Secret(r.value("volcengine.session_token", "", v.SessionTokenEnv, v.SessionTokenFile, false)),
				Region:          v.Region,
				VMSEndpoint:     v.VMSEndpoint,
				SMSEndpoint:     v.SMSEndpoint,
				Timeout:         v.Timeout,
			}
		}
		if d := a.Douyin; d != nil {
			if d.AppID == "" {
				r.errs = append(r.errs, &SecretError{Account: name, Key: "douyin.app_id", Problem: "is required"})
			}
			ra.Douyin = &ResolvedDouyin{
				AppID:     d.AppID,
				AppSecret: Secret(r.value("douyin.app_secret", "", d.AppSecretEnv, d.AppSecretFile, true)),
				BaseURL:   d.BaseURL,
				Timeout:   d.Timeout,
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

// value returns the literal (key), or the environment variable named by
// key_env, or the trimmed contents of the file named by key_file. Validate
// has made sure at most one is set. A required value that has no source,
// or whose source is unset or empty, is an error.
func (r *resolver) value(key, literal, env, file string, required bool) string {
	envKey, fileKey := key+"_env", key+"_file"
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
			SecretAccessKey: Secret(secretAccessKey),
			Region:          volcengine.DefaultRegion,
			VMSEndpoint:     url,
			SMSEndpoint:     url,
			Timeout:         volcengine.DefaultTimeout,
		}
		if a.Volcengine != nil {
			v.Region, v.Timeout = a.Volcengine.Region, a.Volcengine.Timeout
		}
		d := ResolvedDouyin{AppID: appID, AppSecret: Secret(appSecret), BaseURL: url, Timeout: douyin.DefaultTimeout}
		if a.Douyin != nil {
			d.Timeout, d.CheckType = a.Douyin.Timeout, a.Douyin.CheckType
		}
		out[name] = ResolvedAccount{Name: name, Tenant: a.Tenant, Volcengine: &v, Douyin: &d}
	}
	for name, a := range c.Accounts {
		add(name, a)
	}
	if _, ok := out[messages.DefaultAccount]; !ok {
		add(messages.DefaultAccount, Account{})
	}
	return out
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
			creds := volcengine.Credentials{AccessKeyID: v.AccessKeyID, SecretAccessKey: string(v.SecretAccessKey), SessionToken: string(v.SessionToken)}
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
			src := &douyin.TokenSource{AppID: d.AppID, Secret: string(d.AppSecret), BaseURL: d.BaseURL, Store: tokens, Timeout: d.Timeout, HTTPClient: hc}
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
