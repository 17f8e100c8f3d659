// Package queue is qualfile's JetStream wiring: the streams, the shared
// durable pull consumer, and the loop that feeds requests to a handler.
package queue

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/messages"
)

// StreamsConfig configures the four streams of DESIGN.md.
type StreamsConfig struct {
	Subjects        messages.Subjects
	Replicas        int           // default 1
	DuplicateWindow time.Duration // requests and results; default 24h
	AuditMaxAge     time.Duration // default 90 days
	ResultsMaxAge   time.Duration // 0 = kept until removed
	DeadMaxAge      time.Duration // 0 = kept until removed
	FilesMaxAge     time.Duration // default 7 days
}

// withDefaults returns c with every zero or negative field that has a
// default set to it.
func (c StreamsConfig) withDefaults() StreamsConfig {
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.DuplicateWindow <= 0 {
		c.DuplicateWindow = 24 * time.Hour
	}
	if c.AuditMaxAge <= 0 {
		c.AuditMaxAge = 90 * 24 * time.Hour
	}
	if c.FilesMaxAge <= 0 {
		c.FilesMaxAge = 7 * 24 * time.Hour
	}
	return c
}

// Validate reports whether c, after defaults, is usable. Every error it
// returns matches ErrInvalidConfig.
func (c StreamsConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Replicas > 5:
		return fmt.Errorf("%w: replicas %d not in 1..5", ErrInvalidConfig, c.Replicas)
	case c.ResultsMaxAge < 0 || c.DeadMaxAge < 0:
		return fmt.Errorf("%w: negative max age", ErrInvalidConfig)
	}
	return nil
}

// StreamConfigs returns the wanted configuration of each stream. Each
// refuses a new message rather than evict a stored one (discard new, no
// limit per subject): a stream that evicted a result, an event or a dead
// letter would lose what qualfile promised to keep, where a full one is an
// outage that shows.
func (c StreamsConfig) StreamConfigs() []jetstream.StreamConfig {
	c = c.withDefaults()
	n := StreamNames(c.Subjects)
	cfgs := []jetstream.StreamConfig{
		{
			Name: n.Requests, Description: "qualfile filing requests",
			Subjects: []string{c.Subjects.AllRequests()}, Retention: jetstream.WorkQueuePolicy,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, Duplicates: c.DuplicateWindow,
		},
		{
			Name: n.Results, Description: "qualfile results",
			Subjects: []string{c.Subjects.AllResults()}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, Duplicates: c.DuplicateWindow, MaxAge: c.ResultsMaxAge,
			// A submitter reads the last result of one of its requests by its
			// subject, which its permissions can bound (roles.For).
			AllowDirect: true,
		},
		{
			Name: n.Audit, Description: "qualfile audit trail (PII redacted)",
			Subjects: []string{c.Subjects.AllAudit()}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, MaxAge: c.AuditMaxAge,
		},
		{
			Name: n.Dead, Description: "qualfile dead letters (replayable)",
			Subjects: []string{c.Subjects.AllDead()}, Retention: jetstream.LimitsPolicy,
			Storage: jetstream.FileStorage, Replicas: c.Replicas, MaxAge: c.DeadMaxAge, Duplicates: c.DuplicateWindow,
		},
	}
	for i := range cfgs {
		s := &cfgs[i]
		s.MaxMsgsPerSubject, s.Discard = -1, jetstream.DiscardNew
	}
	// A file's chunks: one message per subject, a second refused, so that
	// the first writer's chunk stays (a chunk's subject is named by its
	// file's digest); no rollups, so that no publisher can purge it.
	return append(cfgs, jetstream.StreamConfig{
		Name: n.Files, Description: "qualfile: chunks of SMS files too large for a request message, referenced by the requests",
		Subjects: []string{c.Subjects.AllFiles()}, Retention: jetstream.LimitsPolicy, Storage: jetstream.FileStorage, Replicas: c.Replicas,
		MaxAge: c.FilesMaxAge, MaxMsgsPerSubject: 1, Discard: jetstream.DiscardNew, DiscardNewPerSubject: true,
	})
}

// EnsureStreams creates each stream that is missing. An existing stream
// whose subjects, retention or storage differ is a *ConflictError (changing
// them would change delivery semantics or lose data); the settings qualfile
// owns (replicas, max age, duplicate window, the discard policy and the
// limit per subject, which could evict what it stored) are set back to
// what it wants; limits of messages or bytes an operator set stay, and
// make the stream refuse, not evict.
// It returns what it did per stream ("created", "unchanged", or "updated:"
// and each setting changed, from and to).
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg StreamsConfig) (map[string]string, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	done := map[string]string{}
	for _, want := range cfg.StreamConfigs() {
		s, err := js.Stream(ctx, want.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if _, err := js.CreateStream(ctx, want); err != nil {
				return done, fmt.Errorf("create stream %s: %w", want.Name, err)
			}
			done[want.Name] = "created"
			continue
		}
		if err != nil {
			return done, fmt.Errorf("look up stream %s: %w", want.Name, err)
		}
		have := s.CachedInfo().Config
		if conflicts := conflicting(have, want); len(conflicts) > 0 {
			return done, &ConflictError{Stream: want.Name, Conflicts: conflicts}
		}
		upd, changes := owned(have, want)
		if len(changes) == 0 {
			done[want.Name] = "unchanged"
			continue
		}
		if _, err := js.UpdateStream(ctx, upd); err != nil {
			return done, fmt.Errorf("update stream %s: %w", want.Name, err)
		}
		done[want.Name] = "updated: " + strings.Join(changes, ", ")
	}
	return done, nil
}

// owned is have with the settings qualfile owns set as in want, and what
// changed.
func owned(have, want jetstream.StreamConfig) (jetstream.StreamConfig, []string) {
	upd := have
	var changes []string
	if want.Duplicates == 0 {
		want.Duplicates = have.Duplicates // the server's default: not owned
	}
	change(&changes, "replicas", &upd.Replicas, want.Replicas)
	change(&changes, "max_age", &upd.MaxAge, want.MaxAge)
	change(&changes, "duplicate_window", &upd.Duplicates, want.Duplicates)
	change(&changes, "max_msgs_per_subject", &upd.MaxMsgsPerSubject, want.MaxMsgsPerSubject)
	change(&changes, "discard", &upd.Discard, want.Discard)
	if want.AllowDirect {
		change(&changes, "allow_direct", &upd.AllowDirect, true)
	}
	change(&changes, "discard_new_per_subject", &upd.DiscardNewPerSubject, want.DiscardNewPerSubject)
	change(&changes, "allow_rollup", &upd.AllowRollup, false)
	return upd, changes
}

// change sets *field to to, noting the change when it is one.
func change[T comparable](changes *[]string, name string, field *T, to T) {
	if *field != to {
		*changes = append(*changes, fmt.Sprintf("%s %v → %v", name, *field, to))
		*field = to
	}
}

func conflicting(have, want jetstream.StreamConfig) []string {
	var c []string
	hs, ws := slices.Clone(have.Subjects), slices.Clone(want.Subjects)
	slices.Sort(hs)
	slices.Sort(ws)
	if !slices.Equal(hs, ws) {
		c = append(c, fmt.Sprintf("subjects: have %v, want %v", hs, ws))
	}
	if have.Retention != want.Retention {
		c = append(c, fmt.Sprintf("retention: have %s, want %s", have.Retention, want.Retention))
	}
	if have.Storage != want.Storage {
		c = append(c, fmt.Sprintf("storage: have %s, want %s", have.Storage, want.Storage))
	}
	return c
}

// ConsumerConfig configures the shared durable pull consumer.
type ConsumerConfig struct {
	Subjects      messages.Subjects
	Durable       string        // default "qualfile"
	AckWait       time.Duration // default 60s
	MaxAckPending int           // default 64: with the loop's concurrency, bounds memory
}

// withDefaults returns c with every zero or negative field that has a
// default set to it.
func (c ConsumerConfig) withDefaults() ConsumerConfig {
	if c.Durable == "" {
		c.Durable = "qualfile"
	}
	if c.AckWait <= 0 {
		c.AckWait = time.Minute
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 64
	}
	return c
}

// EnsureConsumer creates or updates the durable pull consumer all replicas
// share.
func EnsureConsumer(ctx context.Context, js jetstream.JetStream, cfg ConsumerConfig) (jetstream.Consumer, error) {
	cfg = cfg.withDefaults()
	stream := StreamNames(cfg.Subjects).Requests
	c, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       cfg.Durable,
		Description:   "qualfile filing workers (shared by all replicas)",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: cfg.MaxAckPending,
		FilterSubject: cfg.Subjects.AllRequests(),
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s on %s: %w", cfg.Durable, stream, err)
	}
	return c, nil
}
