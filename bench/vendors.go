package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/messages"
)

// Bench credentials of the one account, "default". They are not secrets
// (the upstream accepts anything); qualfile reads the secret ones from the
// environment as it would in production.
const (
	benchAccessKeyID     = "AKLTqualfilebench"
	benchSecretAccessKey = "cXVhbGZpbGUtYmVuY2gtc2s="
	benchAppID           = "ttqualfilebench0001"
	benchAppSecret       = "qualfile-bench-app-secret"

	envAccessKeyID     = "BENCH_VOLC_ACCESS_KEY_ID"
	envSecretAccessKey = "BENCH_VOLC_SECRET_ACCESS_KEY"
	envAppSecret       = "BENCH_DOUYIN_APP_SECRET"
)

// checkUpstream files each of the five examples/<api>.json through
// qualfile's own vendor clients (the signer, the Douyin token source, the
// reply parsers) against the upstream, so that a reply shape the real
// clients would refuse fails the bench before anything is measured.
func checkUpstream(ctx context.Context, root, url string) error {
	accounts := map[string]config.ResolvedAccount{
		messages.DefaultAccount: {
			Name: messages.DefaultAccount,
			Volcengine: &config.ResolvedVolcengine{AccessKeyID: benchAccessKeyID, SecretAccessKey: benchSecretAccessKey,
				Region: "cn-north-1", VMSEndpoint: url, SMSEndpoint: url, Timeout: 10 * time.Second},
			Douyin: &config.ResolvedDouyin{AppID: benchAppID, AppSecret: benchAppSecret, BaseURL: url, Timeout: 10 * time.Second},
		},
	}
	hc := dispatch.NewHTTPClient(1)
	defer hc.CloseIdleConnections()
	clients, err := config.Clients(accounts, douyin.NewMemoryStore(), hc)
	if err != nil {
		return err
	}
	d := dispatch.New(clients)
	for _, api := range messages.APIs() {
		path := filepath.Join(root, "examples", string(api)+".json")
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		req, err := messages.ParseRequest(data)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := req.ValidateFor(api); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := d.Dispatch(cctx, req)
		cancel()
		if err != nil {
			return fmt.Errorf("upstream self-check: qualfile's %s client refused the upstream's answer: %w", api, err)
		}
		if len(out.Result) == 0 || out.UpstreamRequestID == "" {
			return fmt.Errorf("upstream self-check: %s: no result or no upstream request id (%s, %q)", api, out.Result, out.UpstreamRequestID)
		}
	}
	return nil
}
