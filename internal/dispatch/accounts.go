package dispatch

import (
	"fmt"
	"net/http"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/dispatch/volcengine"
)

// FromResolved makes the vendor clients of every configured account.
// Douyin tokens go through tokens, a store shared by all replicas (see
// tokenkv), so that they use one token per appid. Every client sends
// through hc (see NewHTTPClient); nil gives each its package's default.
func FromResolved(accounts map[string]config.ResolvedAccount, tokens douyin.TokenStore, hc *http.Client) (map[string]Account, error) {
	out := make(map[string]Account, len(accounts))
	for name, a := range accounts {
		var acct Account
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
