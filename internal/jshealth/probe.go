package jshealth

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of ProbeConfig.
const (
	DefaultBucket = "QUALFILE_HEALTH"
	DefaultMaxAge = time.Hour
)

// ProbeConfig configures OpenProbe.
type ProbeConfig struct {
	// Bucket is the KV bucket the probe writes to; default DefaultBucket.
	Bucket string
	// Replicas of the bucket: the streams' replica count (1 on one
	// server, 3 on a cluster); default 1, at most 5.
	Replicas int
	// Key is this replica's key in the bucket (its ledger owner name; bytes
	// outside [A-Za-z0-9_-] become '_'); default "probe".
	Key string
	// MaxAge is how long a key outlives the last write of its replica;
	// default DefaultMaxAge.
	MaxAge time.Duration
	// Now stamps the value; default time.Now.
	Now func() time.Time
}

// withDefaults returns c with every zero field set to its default.
func (c ProbeConfig) withDefaults() ProbeConfig {
	c.Bucket = cmp.Or(c.Bucket, DefaultBucket)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.MaxAge = cmp.Or(c.MaxAge, DefaultMaxAge)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports whether c, after defaults, is usable. Every error it
// returns matches ErrInvalidConfig.
func (c ProbeConfig) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("%w: replicas %d not in 1..5", ErrInvalidConfig, c.Replicas)
	case c.MaxAge < 0:
		return fmt.Errorf("%w: negative max age %s", ErrInvalidConfig, c.MaxAge)
	}
	return nil
}

// OpenProbe creates the probe's bucket, or updates its configuration (every
// replica calls it at start), and returns the probe: a put of the current
// time under the replica's key. It is a write on purpose: a write needs the
// bucket's quorum, while a cut-off server may answer reads from its own
// state for many seconds (docs/observability.md).
func OpenProbe(ctx context.Context, js jetstream.JetStream, cfg ProbeConfig) (func(context.Context) error, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	key := ProbeKey(cfg.Key)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "qualfile: JetStream health probe, one key per consumer replica",
		History:     1,
		TTL:         cfg.MaxAge,
		Storage:     jetstream.MemoryStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("jshealth: opening bucket %s: %w", cfg.Bucket, err)
	}
	return func(ctx context.Context) error {
		if _, err := kv.Put(ctx, key, []byte(cfg.Now().UTC().Format(time.RFC3339Nano))); err != nil {
			return fmt.Errorf("jshealth: probe write to %s: %w", cfg.Bucket, err)
		}
		return nil
	}, nil
}

// ProbeKey is the key a replica named name probes under: its name with
// every character but [A-Za-z0-9_-] replaced by '_'.
func ProbeKey(name string) string {
	if name == "" {
		return "probe"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, name)
}
