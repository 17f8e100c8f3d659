// Package tokenkv is a douyin.TokenStore over JetStream KV, so that all
// consumer replicas share one Douyin access token per appid
// (docs/vendors.md, "Douyin tokens and errors"). The token bucket holds a
// JSON record per appid; a fetch happens only under a lock in the lock
// bucket, whose MaxAge (LockTTL) frees the lock of a replica that died
// mid-fetch, while everyone else waits for the result.
package tokenkv

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
)

// Defaults of Config.
const (
	DefaultBucket       = "QUALFILE_TOKENS"
	DefaultLockBucket   = "QUALFILE_TOKEN_LOCKS"
	DefaultLockTTL      = 30 * time.Second
	DefaultPollInterval = 100 * time.Millisecond
)

const (
	// MinLockTTL is the shortest LockTTL: JetStream's smallest MaxAge.
	MinLockTTL = 100 * time.Millisecond
	// writeAttempts bounds the compare-and-set retries when storing a token.
	writeAttempts = 5
	// releaseTimeout bounds releasing the lock, even after ctx is done.
	releaseTimeout = 5 * time.Second
)

// Config configures Open. The zero value is usable.
type Config struct {
	Bucket     string // the tokens; default DefaultBucket
	LockBucket string // the fetch locks; default DefaultLockBucket
	Replicas   int    // of both buckets; default 1, at most 5
	// LockTTL is how long the lock of a holder that stopped renewing it
	// survives; default DefaultLockTTL, at least MinLockTTL.
	LockTTL time.Duration
	// PollInterval is how often a replica waiting for another's fetch
	// looks at the token and the lock; default DefaultPollInterval.
	PollInterval time.Duration
	Now          func() time.Time // for token validity; default time.Now
	// Secret returns the secret an app's token is sealed with (its app
	// secret, which every replica holds): tokens are stored encrypted
	// (AES-256-GCM under a key derived from it by HKDF-SHA256, bound to
	// the app id), so whoever reads the bucket without it learns nothing.
	// A token that cannot be opened is as good as none: it is fetched
	// again. Required.
	Secret func(appID string) (secret string, ok bool)
	// Unopened is told of a stored token that does not open (replicas
	// with different secrets would fetch in turn, each cutting the
	// other's token short); nil tells nobody.
	Unopened func(appID string)
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Bucket = cmp.Or(c.Bucket, DefaultBucket)
	c.LockBucket = cmp.Or(c.LockBucket, DefaultLockBucket)
	c.Replicas = cmp.Or(c.Replicas, 1)
	c.LockTTL = cmp.Or(c.LockTTL, DefaultLockTTL)
	c.PollInterval = cmp.Or(c.PollInterval, DefaultPollInterval)
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports whether c, after defaults, is usable. Every error it
// returns matches ErrInvalidConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("%w: replicas %d not in 1..5", ErrInvalidConfig, c.Replicas)
	case c.LockTTL < MinLockTTL:
		return fmt.Errorf("%w: lock TTL %s below %s", ErrInvalidConfig, c.LockTTL, MinLockTTL)
	case c.PollInterval < 0:
		return fmt.Errorf("%w: negative poll interval %s", ErrInvalidConfig, c.PollInterval)
	case c.Bucket == c.LockBucket:
		return fmt.Errorf("%w: token and lock bucket are both %s", ErrInvalidConfig, c.Bucket)
	case c.Secret == nil:
		return fmt.Errorf("%w: no Secret to seal tokens with", ErrInvalidConfig)
	}
	return nil
}

// Store is a douyin.TokenStore shared by all replicas connected to the same
// JetStream. It is safe for concurrent use.
type Store struct {
	tokens jetstream.KeyValue
	locks  jetstream.KeyValue
	cfg    Config
}

var _ douyin.TokenStore = (*Store)(nil)

// record is what the token bucket stores.
type record struct {
	AccessToken string    `json:"access_token"`
	ExpiresAt   time.Time `json:"expires_at"`
	FetchedAt   time.Time `json:"fetched_at"`
}

// Open creates both buckets or updates their configuration (idempotent, so
// every replica calls it at start) and returns the store.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tokens, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.Bucket,
		Description: "qualfile: Douyin access token per appid, shared by all replicas",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("tokenkv: opening bucket %s: %w", cfg.Bucket, err)
	}
	locks, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      cfg.LockBucket,
		Description: "qualfile: Douyin token fetch locks per appid",
		History:     1,
		TTL:         cfg.LockTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("tokenkv: opening bucket %s: %w", cfg.LockBucket, err)
	}
	return &Store{tokens: tokens, locks: locks, cfg: cfg}, nil
}

// Current implements douyin.TokenStore: the stored token of appID, found
// false when none is stored.
func (s *Store) Current(ctx context.Context, appID string) (douyin.Token, bool, error) {
	key, err := Key(appID)
	if err != nil {
		return douyin.Token{}, false, err
	}
	tok, _, found, err := s.read(ctx, appID, key)
	return tok, found, err
}

// Replace implements douyin.TokenStore across replicas: a valid stored
// token other than stale is returned; otherwise Replace takes the appid's
// lock and fetches, or, finding the lock taken, polls until the holder's
// token appears or the lock disappears. ctx bounds the wait.
func (s *Store) Replace(ctx context.Context, appID string, stale douyin.Token, fetch func(context.Context) (douyin.Token, error)) (douyin.Token, error) {
	key, err := Key(appID)
	if err != nil {
		return douyin.Token{}, err
	}
	for {
		cur, _, found, err := s.read(ctx, appID, key)
		if err != nil {
			return douyin.Token{}, err
		}
		if found && s.replaced(cur, stale) {
			return cur, nil
		}
		owner := rand.Text()
		lockRev, err := s.locks.Create(ctx, key, []byte(owner))
		if err == nil {
			return s.fetchLocked(ctx, appID, key, owner, lockRev, stale, fetch)
		}
		if !isWrongLastSequence(err) {
			return douyin.Token{}, fmt.Errorf("tokenkv: taking the fetch lock of app %q: %w", appID, err)
		}
		tok, ok, err := s.wait(ctx, appID, key, stale)
		if err != nil || ok {
			return tok, err
		}
		// The lock is gone without a new token (the holder failed or
		// died): try to take it.
	}
}

// replaced reports whether cur can be handed out instead of fetching.
func (s *Store) replaced(cur, stale douyin.Token) bool {
	return cur.AccessToken != stale.AccessToken && cur.Valid(s.cfg.Now())
}

// wait polls while another replica holds the lock. ok is true when a
// replacement for stale appeared; false when the lock disappeared first.
func (s *Store) wait(ctx context.Context, appID, key string, stale douyin.Token) (tok douyin.Token, ok bool, err error) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return douyin.Token{}, false, fmt.Errorf("tokenkv: waiting for another replica's token fetch of app %q: %w", appID, ctx.Err())
		case <-t.C:
		}
		cur, _, found, err := s.read(ctx, appID, key)
		if err != nil {
			return douyin.Token{}, false, err
		}
		if found && s.replaced(cur, stale) {
			return cur, true, nil
		}
		if _, err := s.locks.Get(ctx, key); err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				return douyin.Token{}, false, nil
			}
			return douyin.Token{}, false, fmt.Errorf("tokenkv: reading the fetch lock of app %q: %w", appID, err)
		}
	}
}

// fetchLocked runs with the lock held (at lockRev): it keeps the lock alive,
// fetches unless somebody refreshed just before, stores the token and
// releases the lock.
func (s *Store) fetchLocked(ctx context.Context, appID, key, owner string, lockRev uint64, stale douyin.Token, fetch func(context.Context) (douyin.Token, error)) (douyin.Token, error) {
	stop := s.keepLock(ctx, key, owner, lockRev)
	defer func() {
		rev := stop()
		if rev == 0 {
			return // lost: the lock expired and may be someone else's now
		}
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		// A failed release is harmless: the lock expires after LockTTL.
		_ = s.locks.Delete(rctx, key, jetstream.LastRevision(rev))
	}()

	cur, rev, found, err := s.read(ctx, appID, key)
	if err != nil {
		return douyin.Token{}, err
	}
	if found && s.replaced(cur, stale) {
		return cur, nil
	}
	tok, err := fetch(ctx)
	if err != nil {
		return douyin.Token{}, err
	}
	return s.write(ctx, appID, key, tok, rev)
}

// keepLock renews the lock every LockTTL/3 until the returned stop is
// called; stop returns the lock's current revision, or 0 when the lock was
// lost (it expired and somebody else took it).
func (s *Store) keepLock(ctx context.Context, key, owner string, rev uint64) (stop func() uint64) {
	quit := make(chan struct{})
	done := make(chan uint64, 1)
	every := s.cfg.LockTTL / 3
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-quit:
				done <- rev
				return
			case <-t.C:
			}
			if rev == 0 {
				continue
			}
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
			n, err := s.locks.Update(c, key, []byte(owner), rev)
			cancel()
			switch {
			case err == nil:
				rev = n
			case isWrongLastSequence(err):
				rev = 0
			}
			// Other errors: try again at the next tick.
		}
	}()
	return func() uint64 {
		close(quit)
		return <-done
	}
}

// write stores tok sealed, with a compare-and-set from rev (create when
// there is none).
// Should another writer get in between (the lock expired during the
// fetch), the token fetched later wins: it is the one that stays valid.
func (s *Store) write(ctx context.Context, appID, key string, tok douyin.Token, rev uint64) (douyin.Token, error) {
	data, err := json.Marshal(record{AccessToken: tok.AccessToken, ExpiresAt: tok.ExpiresAt, FetchedAt: tok.FetchedAt})
	if err != nil {
		return douyin.Token{}, fmt.Errorf("tokenkv: encoding the token of app %q: %w", appID, err)
	}
	if data, err = s.seal(appID, data); err != nil {
		return douyin.Token{}, err
	}
	for range writeAttempts {
		if rev != 0 {
			_, err = s.tokens.Update(ctx, key, data, rev)
		} else {
			_, err = s.tokens.Create(ctx, key, data)
		}
		if err == nil {
			return tok, nil
		}
		if !isWrongLastSequence(err) {
			return douyin.Token{}, fmt.Errorf("tokenkv: storing the token of app %q: %w", appID, err)
		}
		var (
			cur   douyin.Token
			found bool
		)
		cur, rev, found, err = s.read(ctx, appID, key)
		if err != nil {
			return douyin.Token{}, err
		}
		if found && cur.FetchedAt.After(tok.FetchedAt) && cur.Valid(s.cfg.Now()) {
			return cur, nil
		}
	}
	return douyin.Token{}, fmt.Errorf("tokenkv: app %q: %w", appID, ErrWriteConflict)
}

// read returns the stored token of appID with its revision; one that
// cannot be opened (sealed with another secret, or stored in the clear by
// an older version) is not found, its revision given for the write that
// replaces it.
func (s *Store) read(ctx context.Context, appID, key string) (tok douyin.Token, rev uint64, found bool, err error) {
	e, err := s.tokens.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return douyin.Token{}, 0, false, nil
		}
		return douyin.Token{}, 0, false, fmt.Errorf("tokenkv: reading the token of app %q: %w", appID, err)
	}
	data, err := s.open(appID, e.Value())
	var r record
	if err == nil {
		err = json.Unmarshal(data, &r)
	}
	switch {
	case errors.Is(err, ErrInvalidConfig):
		return douyin.Token{}, 0, false, err
	case err != nil:
		if s.cfg.Unopened != nil {
			s.cfg.Unopened(appID)
		}
		return douyin.Token{}, e.Revision(), false, nil
	}
	return douyin.Token{AccessToken: r.AccessToken, ExpiresAt: r.ExpiresAt, FetchedAt: r.FetchedAt}, e.Revision(), true, nil
}

// Key returns the KV key of appID, bytes outside [A-Za-z0-9_-] written as
// "=XX" (upper-case hex) so that app ids map to distinct valid keys.
func Key(appID string) (string, error) {
	if appID == "" {
		return "", ErrNoAppID
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(appID))
	for i := 0; i < len(appID); i++ {
		switch c := appID[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
		}
	}
	return b.String(), nil
}
