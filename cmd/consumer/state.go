package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/tokenkv"
	"github.com/qualfile/qualfile/messages"
)

// legacyBuckets are the names the KV buckets had before they followed the
// subject prefix; every deployment on a server shared them.
var legacyBuckets = []string{"QUALFILE_LEDGER", "QUALFILE_TOKENS", "QUALFILE_TOKEN_LOCKS"}

// state is the deployment's KV buckets and object store.
type state struct {
	ledger  *ledger.Ledger
	tokens  *tokenkv.Store
	objects jetstream.ObjectStore
	files   jetstream.ObjectStore
}

// openState opens (creating or updating) the deployment's KV buckets — the
// idempotency ledger and the shared Douyin token store — and the object
// store of oversized dead-letter bodies. They are named from the subject
// prefix (queue.BucketNames), like the streams, so that two deployments on
// one server never see each other's state.
func openState(ctx context.Context, js jetstream.JetStream, cfg *config.Config) (state, error) {
	b := queue.BucketNames(messages.Subjects{Prefix: cfg.Subjects.Prefix})
	led, err := ledger.Open(ctx, js, ledger.Config{Bucket: b.Ledger, Replicas: cfg.Streams.Replicas, MaxAge: cfg.Ledger.MaxAge})
	if err != nil {
		return state{}, err
	}
	tokens, err := tokenkv.Open(ctx, js, tokenkv.Config{Bucket: b.Tokens, LockBucket: b.TokenLocks, Replicas: cfg.Streams.Replicas})
	if err != nil {
		return state{}, err
	}
	objects, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: b.Objects, Description: "qualfile dead-letter bodies too big for a message",
		Storage: jetstream.FileStorage, Replicas: cfg.Streams.Replicas,
	})
	if err != nil {
		return state{}, fmt.Errorf("object store %s: %w", b.Objects, err)
	}
	files, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: b.Files, Description: "qualfile: SMS files too large for a request message, referenced by the requests",
		Storage: jetstream.FileStorage, Replicas: cfg.Streams.Replicas, TTL: cfg.Files.MaxAge,
	})
	if err != nil {
		return state{}, fmt.Errorf("object store %s: %w", b.Files, err)
	}
	return state{ledger: led, tokens: tokens, objects: objects, files: files}, nil
}

// findLegacyBuckets returns which of legacyBuckets exist on the server: an
// older version ran here, and its ledger entries are not consulted.
func findLegacyBuckets(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var found []string
	for _, name := range legacyBuckets {
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
