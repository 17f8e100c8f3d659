package consumer

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/messages"
)

// configWithPrefix is the default configuration with another subject
// prefix.
func configWithPrefix(tb testing.TB, prefix string) *config.Config {
	tb.Helper()
	c := config.Default()
	c.Subjects.Prefix = prefix
	if err := c.Validate(); err != nil {
		tb.Fatal(err)
	}
	return c
}

// TestOpenStateIsolatesPrefixes: two deployments on one server (prod's
// "filing", staging's "staging.filing") get disjoint buckets, and neither
// sees the other's ledger entries or Douyin tokens.
func TestOpenStateIsolatesPrefixes(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	apps := map[string]config.ResolvedAccount{"default": {Douyin: &config.ResolvedDouyin{AppID: "tt1", AppSecret: "s"}}}
	prod, err := openBuckets(ctx, js, configWithPrefix(t, "filing"), apps, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	staging, err := openBuckets(ctx, js, configWithPrefix(t, "staging.filing"), apps, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	prodLed, prodTokens, stagingLed, stagingTokens := prod.ledger, prod.tokens, staging.ledger, staging.tokens

	if prodLed.Bucket() != "FILING_LEDGER" || stagingLed.Bucket() != "STAGING_FILING_LEDGER" {
		t.Errorf("ledger buckets %s and %s, want FILING_LEDGER and STAGING_FILING_LEDGER", prodLed.Bucket(), stagingLed.Bucket())
	}
	var names []string
	for name := range js.KeyValueStoreNames(ctx).Name() {
		names = append(names, name)
	}
	slices.Sort(names)
	want := []string{"FILING_LEDGER", "FILING_TOKENS", "FILING_TOKEN_LOCKS", "STAGING_FILING_LEDGER", "STAGING_FILING_TOKENS", "STAGING_FILING_TOKEN_LOCKS"}
	if !slices.Equal(names, want) {
		t.Errorf("buckets %v, want %v", names, want)
	}

	// A request claimed by prod is new to staging, and the reverse.
	if _, created, err := prodLed.Claim(ctx, "req-1", messages.APIVMSAddQualification, "prod"); err != nil || !created {
		t.Fatalf("prod claim: created %v, %v", created, err)
	}
	if _, err := stagingLed.Get(ctx, "", "req-1"); !errors.Is(err, ledger.ErrNotFound) {
		t.Errorf("staging sees prod's entry: err = %v, want ErrNotFound", err)
	}
	if _, created, err := stagingLed.Claim(ctx, "req-1", messages.APIVMSAddQualification, "staging"); err != nil || !created {
		t.Errorf("staging claim of the same id: created %v, %v; want a new entry", created, err)
	}
	if e, err := prodLed.Get(ctx, "", "req-1"); err != nil || e.Owner != "prod" {
		t.Errorf("prod's entry after staging's claim: %+v, %v", e, err)
	}

	// A token prod fetched is not handed to staging.
	tok := douyin.Token{AccessToken: "prod-token", FetchedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if _, err := prodTokens.Replace(ctx, "tt1", douyin.Token{}, func(context.Context) (douyin.Token, error) { return tok, nil }); err != nil {
		t.Fatal(err)
	}
	if got, found, err := stagingTokens.Current(ctx, "tt1"); err != nil || found {
		t.Errorf("staging sees prod's token: %+v found %v, %v", got, found, err)
	}
}

// TestOpenStateLedgerMaxAge: ledger.max_age is the ledger bucket's TTL.
func TestOpenStateLedgerMaxAge(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := configWithPrefix(t, "filing")
	cfg.Ledger.MaxAge = 48 * time.Hour
	if _, err := openBuckets(ctx, js, cfg, nil, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "FILING_LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.TTL() != 48*time.Hour {
		t.Errorf("ledger TTL %s, want 48h", st.TTL())
	}
}

func TestFindLegacyBuckets(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if found, err := findLegacyBuckets(ctx, js); err != nil || len(found) != 0 {
		t.Fatalf("on an empty server: %v, %v", found, err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "QUALFILE_LEDGER"}); err != nil {
		t.Fatal(err)
	}
	if found, err := findLegacyBuckets(ctx, js); err != nil || !slices.Equal(found, []string{"QUALFILE_LEDGER"}) {
		t.Errorf("found %v, %v; want [QUALFILE_LEDGER]", found, err)
	}
}
