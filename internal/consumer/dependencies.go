package consumer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/queue"
)

// What the guarantees rely on in JetStream: the four streams, the durable
// consumer, the KV buckets and object stores. ensure makes them as they
// must be, at start and whenever the watch finds one missing.

// ensure creates what is missing and sets back what qualfile owns of the
// streams (queue.EnsureStreams), the durable consumer and the buckets.
func (c *Consumer) ensure(ctx context.Context) (jetstream.Consumer, buckets, error) {
	cfg := c.cfg
	done, err := queue.EnsureStreams(ctx, c.JS, queue.StreamsConfig{
		Subjects:        c.Subjects,
		Replicas:        cfg.Streams.Replicas,
		DuplicateWindow: cfg.Streams.DuplicateWindow,
		AuditMaxAge:     cfg.Streams.AuditMaxAge,
		ResultsMaxAge:   cfg.Streams.ResultsMaxAge,
		DeadMaxAge:      cfg.Streams.DeadMaxAge,
		FilesMaxAge:     cfg.Files.MaxAge,
	})
	if err != nil {
		return nil, buckets{}, err
	}
	c.log.Info("streams ready", zap.Any("streams", done))
	durable, err := queue.EnsureConsumer(ctx, c.JS, queue.ConsumerConfig{Subjects: c.Subjects, Durable: cfg.Consumer.Durable,
		AckWait: cfg.Consumer.AckWait, MaxAckPending: cfg.Consumer.MaxAckPending})
	if err != nil {
		return nil, buckets{}, err
	}
	b, err := openBuckets(ctx, c.JS, cfg, c.deps.Accounts, c.log)
	return durable, b, err
}

// dependencies are the streams that must exist: the four streams and
// those of the buckets (KV_ and OBJ_).
func (c *Consumer) dependencies() []string {
	n, b := queue.StreamNames(c.Subjects), queue.BucketNames(c.Subjects)
	names := []string{n.Requests, n.Results, n.Audit, n.Dead, n.Files, "KV_" + b.Ledger, "KV_" + b.Tokens, "KV_" + b.TokenLocks,
		"KV_" + b.Health, "OBJ_" + b.Objects}
	if c.cfg.Limits.Rate > 0 {
		names = append(names, "KV_"+b.Rate)
	}
	return names
}

// missing lists what is gone: a stream, a bucket, the durable consumer.
func (c *Consumer) missing(ctx context.Context) ([]string, error) {
	var gone []string
	for _, name := range c.dependencies() {
		switch _, err := c.JS.Stream(ctx, name); {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			gone = append(gone, "stream "+name)
		case err != nil:
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
	}
	requests := queue.StreamNames(c.Subjects).Requests
	switch _, err := c.JS.Consumer(ctx, requests, c.cfg.Consumer.Durable); {
	case errors.Is(err, jetstream.ErrConsumerNotFound), errors.Is(err, jetstream.ErrStreamNotFound):
		gone = append(gone, "durable consumer "+c.cfg.Consumer.Durable)
	case err != nil:
		return nil, fmt.Errorf("durable consumer %s: %w", c.cfg.Consumer.Durable, err)
	}
	return gone, nil
}

// watchDependencies looks for what is missing every interval and
// recreates it; c.depsErr holds what is wrong, for /readyz.
func (c *Consumer) watchDependencies(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, SetupTimeout)
		gone, err := c.missing(cctx)
		if err == nil { // (JetStream not answering is the health watch's to report)
			err = c.repair(cctx, gone)
			c.depsErr.Store(&err)
		}
		cancel()
	}
}

// repair recreates what is missing.
func (c *Consumer) repair(ctx context.Context, gone []string) error {
	if len(gone) == 0 {
		return nil
	}
	what := strings.Join(gone, ", ")
	c.log.Error("JetStream resources qualfile relies on are missing; recreating them", zap.String("missing", what))
	if _, _, err := c.ensure(ctx); err != nil {
		return fmt.Errorf("missing: %s; recreating failed: %w", what, err)
	}
	c.log.Warn("JetStream resources recreated; what they held is lost", zap.String("recreated", what))
	return nil
}

// notReady is why the consumer is not ready: JetStream not answering, or
// something it relies on missing and not recreated (nil: ready).
func (c *Consumer) notReady() error {
	if err := c.Health.Err(); err != nil {
		return err
	}
	if err := c.depsErr.Load(); err != nil && *err != nil {
		return *err
	}
	return nil
}
