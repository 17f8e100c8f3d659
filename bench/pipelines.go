package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// prefixOf is the subject prefix of run n of a pipeline: raw<n>, plain<n>,
// wm<n>, b<n> (qualfile). Every run has its own, so its streams (and
// qualfile's KV buckets) are fresh, and they are deleted after it.
func prefixOf(pipeline string, n int) string {
	short := map[string]string{pipelineRaw: "raw", pipelinePlain: "plain", pipelineWatermill: "wm", pipelineContract: "ct", pipelineQualfile: "b"}[pipeline]
	return fmt.Sprintf("%s%d", short, n)
}

// streamsConfig is qualfile's configuration of the four streams under
// prefix, also used for the reference pipelines' request and result
// streams so that every pipeline reads and writes streams alike (file
// storage, work-queue requests, 24 h duplicate window).
func (b *bench) streamsConfig(prefix string) queue.StreamsConfig {
	return queue.StreamsConfig{Subjects: messages.Subjects{Prefix: prefix}, Replicas: b.o.Replicas}
}

// prepareStreams deletes whatever an earlier, interrupted bench left under
// prefix and creates the streams of a run of pipeline: all four of
// qualfile's (exactly as qualfile creates them), requests and results for
// plain and Watermill, requests only for raw (its notices are not stored).
func (b *bench) prepareStreams(ctx context.Context, pipeline, prefix string) error {
	b.deleteStreams(ctx, prefix)
	cfg := b.streamsConfig(prefix)
	switch pipeline {
	case pipelineQualfile:
		_, err := queue.EnsureStreams(ctx, b.js, cfg)
		return err
	case pipelineContract:
		// qualfile's streams, and a ledger bucket as qualfile's: one
		// revision a key, on file.
		if _, err := queue.EnsureStreams(ctx, b.js, cfg); err != nil {
			return err
		}
		_, err := b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: queue.BucketNames(cfg.Subjects).Ledger, History: 1,
			Storage: jetstream.FileStorage, Replicas: b.o.Replicas, TTL: 30 * 24 * time.Hour})
		return err
	}
	want := cfg.StreamConfigs()[:2]
	if pipeline == pipelineRaw {
		want = want[:1]
	}
	for _, sc := range want {
		if _, err := b.js.CreateStream(ctx, sc); err != nil {
			return fmt.Errorf("create stream %s: %w", sc.Name, err)
		}
	}
	return nil
}

// deleteStreams deletes every stream, KV bucket and object store named
// from prefix, so that the file store does not fill up run after run.
func (b *bench) deleteStreams(ctx context.Context, prefix string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	s := messages.Subjects{Prefix: prefix}
	n, k := queue.StreamNames(s), queue.BucketNames(s)
	for _, name := range []string{n.Requests, n.Results, n.Audit, n.Dead, n.Files} {
		if err := b.js.DeleteStream(ctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			b.logf("delete stream %s: %v", name, err)
		}
	}
	for _, name := range []string{k.Ledger, k.Tokens, k.TokenLocks, k.Health} {
		if err := b.js.DeleteKeyValue(ctx, name); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
			b.logf("delete KV bucket %s: %v", name, err)
		}
	}
	if err := b.js.DeleteObjectStore(ctx, k.Objects); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		b.logf("delete object store %s: %v", k.Objects, err)
	}
}

// startPipeline starts the process of a run and waits until it consumes:
// the bench itself as a worker for raw, plain and Watermill, the consumer
// binary for qualfile.
func (b *bench) startPipeline(ctx context.Context, pipeline, prefix string, concurrency int) (*child, error) {
	if pipeline == pipelineQualfile {
		return b.startQualfile(ctx, prefix, concurrency)
	}
	w := workerConfig{pipeline: pipeline, natsURL: b.nats.url, prefix: prefix, upstream: b.up.url, concurrency: concurrency}
	cmd := exec.Command(b.self, w.args()...)
	cmd.Env = cleanEnv()
	ch, err := b.procs.start(pipeline+" "+prefix, cmd)
	if err != nil {
		return nil, err
	}
	if err := ch.waitReady(60 * time.Second); err != nil {
		ch.stop(time.Second)
		return nil, err
	}
	return ch, ctx.Err()
}

// cleanEnv is the bench's environment without QUALFILE_* variables, so
// that nothing in the caller's environment changes a pipeline's settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "QUALFILE_") {
			env = append(env, kv)
		}
	}
	return env
}
