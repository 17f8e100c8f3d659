package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
)

const (
	secretSK    = "SK-very-secret-0123456789"
	secretToken = "STS-session-token-abcdef"
	secretApp   = "douyin-app-secret-zyxw"
)

func TestResolveAccounts(t *testing.T) {
	dir := t.TempDir()
	skFile := filepath.Join(dir, "sk")
	if err := os.WriteFile(skFile, []byte("  "+secretSK+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	c.Accounts = map[string]Account{
		"default": {
			Volcengine: &VolcengineAccount{AccessKeyIDEnv: "AK", SecretAccessKeyFile: skFile, SessionTokenEnv: "TOKEN", Region: "cn-beijing"},
			Douyin:     &DouyinAccount{AppID: "tt123", AppSecretEnv: "DY", BaseURL: douyin.SandboxBaseURL, CheckType: douyin.CheckTypeReject},
		},
		"vms-only": {Volcengine: &VolcengineAccount{AccessKeyID: "AKLIT", SecretAccessKeyEnv: "SK2", Timeout: 3 * time.Second}},
	}
	c.applyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	got, err := c.ResolveAccounts(env(map[string]string{"AK": "AKENV", "TOKEN": secretToken, "DY": " " + secretApp + " ", "SK2": "sk2"}), os.ReadFile)
	if err != nil {
		t.Fatalf("ResolveAccounts: %v", err)
	}
	want := map[string]ResolvedAccount{
		"default": {
			Name: "default",
			Volcengine: &ResolvedVolcengine{AccessKeyID: "AKENV", SecretAccessKey: secretSK, SessionToken: secretToken, Region: "cn-beijing",
				VMSEndpoint: volcengine.DefaultVMSEndpoint, SMSEndpoint: volcengine.DefaultSMSEndpoint, Timeout: 10 * time.Second},
			Douyin: &ResolvedDouyin{AppID: "tt123", AppSecret: secretApp, BaseURL: douyin.SandboxBaseURL, Timeout: 10 * time.Second, CheckType: "REJECT"},
		},
		"vms-only": {
			Name: "vms-only",
			Volcengine: &ResolvedVolcengine{AccessKeyID: "AKLIT", SecretAccessKey: "sk2", Region: "cn-north-1",
				VMSEndpoint: volcengine.DefaultVMSEndpoint, SMSEndpoint: volcengine.DefaultSMSEndpoint, Timeout: 3 * time.Second},
		},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d accounts, want %d", len(got), len(want))
	}
	for name, w := range want {
		g := got[name]
		if g.Name != w.Name || (g.Volcengine == nil) != (w.Volcengine == nil) || (g.Douyin == nil) != (w.Douyin == nil) ||
			(w.Volcengine != nil && *g.Volcengine != *w.Volcengine) || (w.Douyin != nil && *g.Douyin != *w.Douyin) {
			// %#v is redacted, so compare the secrets by hand.
			t.Errorf("account %s = %#v %#v, want %#v %#v", name, g.Volcengine, g.Douyin, w.Volcengine, w.Douyin)
		}
	}
}

func TestResolveAccountsErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	for _, tc := range []struct {
		name     string
		account  Account
		env      map[string]string
		wantKey  string
		wantText string
		wantIs   error
	}{
		{name: "env unset", account: Account{Volcengine: &VolcengineAccount{AccessKeyID: "AK", SecretAccessKeyEnv: "SK_UNSET"}},
			wantKey: "volcengine.secret_access_key_env", wantText: `environment variable "SK_UNSET" is not set`},
		{name: "file missing", account: Account{Volcengine: &VolcengineAccount{AccessKeyID: "AK", SecretAccessKeyFile: missing}},
			wantKey: "volcengine.secret_access_key_file", wantText: missing, wantIs: fs.ErrNotExist},
		{name: "file empty", account: Account{Douyin: &DouyinAccount{AppID: "tt", AppSecretFile: empty}},
			wantKey: "douyin.app_secret_file", wantText: "is empty"},
		{name: "no secret source", account: Account{Volcengine: &VolcengineAccount{AccessKeyID: "AK"}},
			wantKey: "volcengine.secret_access_key", wantText: "secret_access_key_env or volcengine.secret_access_key_file"},
		{name: "no access key id", account: Account{Volcengine: &VolcengineAccount{SecretAccessKeyEnv: "SK"}}, env: map[string]string{"SK": secretSK},
			wantKey: "volcengine.access_key_id", wantText: "is required"},
		{name: "no app id", account: Account{Douyin: &DouyinAccount{AppSecretEnv: "DY"}}, env: map[string]string{"DY": secretApp},
			wantKey: "douyin.app_id", wantText: "is required"},
		{name: "session token env named but unset", account: Account{Volcengine: &VolcengineAccount{AccessKeyID: "AK", SecretAccessKeyEnv: "SK", SessionTokenEnv: "TOK"}},
			env: map[string]string{"SK": secretSK}, wantKey: "volcengine.session_token_env", wantText: `"TOK"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Accounts = map[string]Account{"acme": tc.account}
			c.applyDefaults()
			got, err := c.ResolveAccounts(env(tc.env), os.ReadFile)
			if err == nil {
				t.Fatalf("ResolveAccounts = %v, want an error", got)
			}
			var se *SecretError
			if !errors.Is(err, ErrMissingSecret) || !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *SecretError matching ErrMissingSecret", err)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want it to match %v", err, tc.wantIs)
			}
			msg := err.Error()
			for _, want := range []string{`account "acme"`, tc.wantKey, tc.wantText} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			for _, secret := range []string{secretSK, secretApp, secretToken} {
				if strings.Contains(msg, secret) {
					t.Errorf("error %q contains a secret", msg)
				}
			}
		})
	}
}

func TestResolveAccountsReportsEveryAccount(t *testing.T) {
	c := Default()
	c.Accounts = map[string]Account{
		"a": {Volcengine: &VolcengineAccount{AccessKeyID: "AK", SecretAccessKeyEnv: "A_SK"}},
		"b": {Douyin: &DouyinAccount{AppID: "tt", AppSecretEnv: "B_SECRET"}},
	}
	_, err := c.ResolveAccounts(env(nil), os.ReadFile)
	for _, want := range []string{`account "a"`, "A_SK", `account "b"`, "B_SECRET"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to mention %s", err, want)
		}
	}
}

func TestResolveAccountsNone(t *testing.T) {
	_, err := Default().ResolveAccounts(env(nil), os.ReadFile)
	if !errors.Is(err, ErrNoAccounts) {
		t.Errorf("err = %v, want ErrNoAccounts", err)
	}
}

// TestRedaction formats resolved accounts every way a caller might print or
// log them and checks that no secret appears.
func TestRedaction(t *testing.T) {
	v := &ResolvedVolcengine{AccessKeyID: "AKPUBLIC", SecretAccessKey: secretSK, SessionToken: secretToken, Region: "cn-north-1",
		VMSEndpoint: volcengine.DefaultVMSEndpoint, Timeout: time.Second}
	d := &ResolvedDouyin{AppID: "ttPUBLIC", AppSecret: secretApp, BaseURL: douyin.ProductionBaseURL}
	acct := ResolvedAccount{Name: "acme", Volcengine: v, Douyin: d}
	accounts := map[string]ResolvedAccount{"acme": acct}

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, x := range []any{*v, v, *d, d, acct, &acct, accounts, []any{acct}} {
			outputs = append(outputs, fmt.Sprintf(verb, x))
		}
	}
	outputs = append(outputs, fmt.Sprint(acct), fmt.Sprintln(v, d), v.String(), fmt.Sprintf("%#v", d))

	for _, x := range []any{*v, d, acct, accounts} {
		b, err := json.Marshal(x)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, string(b))
	}

	var sbuf bytes.Buffer
	sl := slog.New(slog.NewJSONHandler(&sbuf, nil))
	sl.Info("acct", "volcengine", v, "douyin", *d, "account", acct)
	outputs = append(outputs, sbuf.String())

	var zbuf bytes.Buffer
	zl := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&zbuf), zap.DebugLevel))
	zl.Info("acct", zap.Any("volcengine", v), zap.Any("douyin", *d), zap.Any("account", acct), zap.Any("accounts", accounts),
		zap.Reflect("reflected", acct), zap.Stringer("stringer", d))
	outputs = append(outputs, zbuf.String())

	for _, out := range outputs {
		for _, secret := range []string{secretSK, secretToken, secretApp} {
			if strings.Contains(out, secret) {
				t.Errorf("output contains a secret: %s", out)
			}
		}
	}
	// The non-secret parts are still shown, and so is the fact that a
	// secret is set.
	for _, want := range []string{"AKPUBLIC", "ttPUBLIC", Redacted} {
		if !strings.Contains(fmt.Sprintf("%+v", acct), want) || !strings.Contains(zbuf.String(), want) || !strings.Contains(sbuf.String(), want) {
			t.Errorf("%q missing from %+v / %s / %s", want, acct, zbuf.String(), sbuf.String())
		}
	}
	if got := fmt.Sprintf("%#v", *d); !strings.HasPrefix(got, "config.ResolvedDouyin{AppID:\"ttPUBLIC\"") {
		t.Errorf("%%#v = %s", got)
	}
}

func TestWithSandbox(t *testing.T) {
	const url = "http://127.0.0.1:12345"
	c := Default()
	c.Accounts = map[string]Account{
		"acme":  {Volcengine: &VolcengineAccount{AccessKeyIDEnv: "REAL_AK", SecretAccessKeyEnv: "REAL_SK", Region: "cn-beijing", Timeout: 3 * time.Second}},
		"shop":  {Douyin: &DouyinAccount{AppID: "ttreal", AppSecretEnv: "REAL_DY", CheckType: douyin.CheckTypeReject}},
		"empty": {},
	}
	c.applyDefaults()
	got := c.WithSandbox(url, "AKSANDBOX", "SKSANDBOX", "ttsandbox", "appsecretsandbox")
	if len(got) != 4 {
		t.Fatalf("got accounts %v, want acme, shop, empty and default", got)
	}
	for name, a := range got {
		if a.Name != name || a.Volcengine == nil || a.Douyin == nil {
			t.Fatalf("%s = %+v", name, a)
		}
		v, d := a.Volcengine, a.Douyin
		if v.AccessKeyID != "AKSANDBOX" || v.SecretAccessKey != "SKSANDBOX" || v.SessionToken != "" || v.VMSEndpoint != url || v.SMSEndpoint != url {
			t.Errorf("%s volcengine = %+v", name, v)
		}
		if d.AppID != "ttsandbox" || d.AppSecret != "appsecretsandbox" || d.BaseURL != url {
			t.Errorf("%s douyin = %+v", name, d)
		}
	}
	if v := got["acme"].Volcengine; v.Region != "cn-beijing" || v.Timeout != 3*time.Second {
		t.Errorf("acme keeps its region and timeout: %+v", v)
	}
	if v := got["default"].Volcengine; v.Region != volcengine.DefaultRegion || v.Timeout != volcengine.DefaultTimeout {
		t.Errorf("default = %+v", v)
	}
	if d := got["shop"].Douyin; d.CheckType != douyin.CheckTypeReject {
		t.Errorf("shop keeps its check type: %+v", d)
	}
	// No accounts configured: just default.
	if got := Default().WithSandbox(url, "a", "b", "c", "d"); len(got) != 1 || got["default"].Volcengine == nil {
		t.Errorf("no accounts: %v", got)
	}
}
