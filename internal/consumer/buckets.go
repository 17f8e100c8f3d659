package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/tokenkv"
	"github.com/qualfile/qualfile/messages"
)

// buckets are the deployment's KV buckets and object stores.
type buckets struct {
	ledger  *ledger.Ledger
	tokens  *tokenkv.Store
	objects jetstream.ObjectStore
	slots   guard.Slots // nil without a rate limit
}

// openBuckets opens (creating or updating) the deployment's KV buckets — the
// idempotency ledger and the shared Douyin token store — and the object
// store of oversized dead-letter bodies. They are named from the subject
// prefix (queue.BucketNames), like the streams, so that two deployments on
// one server never see each other's state.
func openBuckets(ctx context.Context, js jetstream.JetStream, cfg *config.Config, accounts map[string]config.ResolvedAccount, log *zap.Logger) (buckets, error) {
	b := queue.BucketNames(messages.Subjects{Prefix: cfg.Subjects.Prefix})
	led, err := ledger.Open(ctx, js, ledger.Config{Bucket: b.Ledger, Replicas: cfg.Streams.Replicas, MaxAge: cfg.Ledger.MaxAge})
	if err != nil {
		return buckets{}, err
	}
	secrets := map[string]string{} // Douyin tokens are sealed with their app's secret
	for _, a := range accounts {
		if d := a.Douyin; d != nil {
			secrets[d.AppID] = string(d.AppSecret)
		}
	}
	tokens, err := tokenkv.Open(ctx, js, tokenkv.Config{Bucket: b.Tokens, LockBucket: b.TokenLocks, Replicas: cfg.Streams.Replicas,
		Secret: func(appID string) (string, bool) { s, ok := secrets[appID]; return s, ok },
		Unopened: func(appID string) {
			log.Warn("a stored Douyin token cannot be read (sealed with another app secret, or damaged); fetching a new one: give every replica the same app secret",
				zap.String("app_id", messages.Truncate(appID, 64)))
		}})
	if err != nil {
		return buckets{}, err
	}
	objects, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: b.Objects, Description: "qualfile dead-letter bodies too big for a message",
		Storage: jetstream.FileStorage, Replicas: cfg.Streams.Replicas,
	})
	if err != nil {
		return buckets{}, fmt.Errorf("object store %s: %w", b.Objects, err)
	}
	slots, err := openSlots(ctx, js, cfg)
	if err != nil {
		return buckets{}, err
	}
	return buckets{ledger: led, tokens: tokens, objects: objects, slots: slots}, nil
}

// openSlots opens the KV bucket of the shared rate-limit slots, when a
// rate is configured: a slot is a key, kept for a minute.
func openSlots(ctx context.Context, js jetstream.JetStream, cfg *config.Config) (guard.Slots, error) {
	if cfg.Limits.Rate <= 0 {
		return nil, nil
	}
	b := queue.BucketNames(messages.Subjects{Prefix: cfg.Subjects.Prefix})
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: b.Rate, Description: "qualfile: slots of the vendors' rate limits, shared by the replicas",
		TTL: slotTTL(cfg), Storage: jetstream.MemoryStorage, Replicas: cfg.Streams.Replicas, History: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("rate bucket %s: %w", b.Rate, err)
	}
	return guard.KVSlots{KV: kv}, nil
}

// slotTTL is how long a slot's key is kept: past the furthest slot a call
// may take ahead of time (its call timeout) and a slot's width, so that no
// key expires before its time and is taken twice.
func slotTTL(cfg *config.Config) time.Duration {
	width := time.Duration(float64(time.Second) / cfg.Limits.Rate)
	return max(time.Minute, cfg.Consumer.CallTimeout+2*width)
}

// warnLegacyBuckets logs the buckets of an older version, whose ledger
// entries no longer prevent a second filing.
func warnLegacyBuckets(ctx context.Context, js jetstream.JetStream, log *zap.Logger, ledgerBucket string) {
	if legacy, err := findLegacyBuckets(ctx, js); err != nil {
		log.Warn("could not look for buckets of an older version", zap.Error(err))
	} else if len(legacy) > 0 {
		log.Warn("buckets of an older version exist and are not used: their ledger entries no longer prevent a second filing (see docs/operations.md, Upgrading)",
			zap.Strings("buckets", legacy), zap.String("ledger", ledgerBucket))
	}
}

// findLegacyBuckets returns which of queue.LegacyBuckets exist on the server: an
// older version ran here, and its ledger entries are not consulted.
func findLegacyBuckets(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var found []string
	for _, name := range queue.LegacyBuckets {
		_, err := js.KeyValue(ctx, name)
		switch {
		case err == nil:
			found = append(found, name)
		case errors.Is(err, jetstream.ErrBucketNotFound):
		default:
			return found, fmt.Errorf("looking up bucket %s: %w", name, err)
		}
	}
	return found, nil
}
