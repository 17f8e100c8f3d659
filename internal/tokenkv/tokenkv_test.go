package tokenkv_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/dispatch/douyin"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/tokenkv"
)

const appID = "tt0123456789abcdef"

// vendor is a fake Douyin token endpoint that counts fetches and hands out
// tok-1, tok-2, ...
type vendor struct {
	*httptest.Server
	fetches atomic.Int64
	delay   time.Duration
}

func newVendor(t *testing.T, delay time.Duration) *vendor {
	t.Helper()
	v := &vendor{delay: delay}
	v.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/apps/v2/token" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		n := v.fetches.Add(1)
		time.Sleep(v.delay)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"err_no":0,"err_tips":"success","data":{"access_token":"tok-%d","expires_in":7200}}`, n)
	}))
	t.Cleanup(v.Close)
	return v
}

// replicas opens two stores on two separate connections to one server, as
// two consumer replicas would.
func replicas(t *testing.T, cfg tokenkv.Config) (a, b *tokenkv.Store, js jetstream.JetStream) {
	t.Helper()
	js, _, srv := natstest.JetStream(t)
	js2, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	if cfg.Secret == nil {
		cfg.Secret = appSecret
	}
	if a, err = tokenkv.Open(c, js, cfg); err != nil {
		t.Fatal(err)
	}
	if b, err = tokenkv.Open(c, js2, cfg); err != nil {
		t.Fatal(err)
	}
	return a, b, js
}

// appSecret is the Secret of the replicas' stores: each app's secret.
func appSecret(id string) (string, bool) { return "secret of " + id, true }

func source(v *vendor, s douyin.TokenStore) *douyin.TokenSource {
	return &douyin.TokenSource{AppID: appID, Secret: "app-secret", BaseURL: v.URL, Store: s, Timeout: 5 * time.Second}
}

func ctx(t *testing.T) context.Context {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// concurrently runs f n times at once and returns the tokens.
func concurrently(t *testing.T, n int, f func(i int) (douyin.Token, error)) []douyin.Token {
	t.Helper()
	toks := make([]douyin.Token, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			toks[i], errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	return toks
}

func sameToken(t *testing.T, toks []douyin.Token, want string) {
	t.Helper()
	for i, tok := range toks {
		if tok.AccessToken != want || !tok.Valid(time.Now()) {
			t.Fatalf("call %d got %q (expires %s), want %s", i, tok.AccessToken, tok.ExpiresAt, want)
		}
	}
}

func TestSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	v := newVendor(t, 50*time.Millisecond)
	a, b, _ := replicas(t, tokenkv.Config{})
	srcs := []*douyin.TokenSource{source(v, a), source(v, b)}
	c := ctx(t)

	if _, found, err := a.Current(c, appID); err != nil || found {
		t.Fatalf("current before any fetch: found=%v err=%v", found, err)
	}

	toks := concurrently(t, 20, func(i int) (douyin.Token, error) { return srcs[i%2].Token(c) })
	if n := v.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for 20 callers on 2 replicas, want 1", n)
	}
	sameToken(t, toks, "tok-1")
	for _, s := range []*tokenkv.Store{a, b} {
		cur, found, err := s.Current(c, appID)
		if err != nil || !found || cur.AccessToken != "tok-1" || !cur.ExpiresAt.Equal(toks[0].ExpiresAt) || !cur.FetchedAt.Equal(toks[0].FetchedAt) {
			t.Fatalf("current %+v found=%v err=%v", cur.ExpiresAt, found, err)
		}
	}

	// The vendor rejects tok-1: both replicas invalidate it at once.
	bad := toks[0]
	toks = concurrently(t, 20, func(i int) (douyin.Token, error) { return srcs[i%2].Invalidate(c, bad) })
	if n := v.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after invalidating on 2 replicas, want 2", n)
	}
	sameToken(t, toks, "tok-2")

	// A late Invalidate of the old token changes nothing.
	if tok, err := srcs[1].Invalidate(c, bad); err != nil || tok.AccessToken != "tok-2" || v.fetches.Load() != 2 {
		t.Fatalf("late invalidate: %q %v, fetches %d", tok.AccessToken, err, v.fetches.Load())
	}
	// Another app has its own token.
	other := source(v, b)
	other.AppID = "tt-other.app"
	if tok, err := other.Token(c); err != nil || tok.AccessToken != "tok-3" {
		t.Fatalf("other app: %q %v", tok.AccessToken, err)
	}
	if tok, err := srcs[0].Token(c); err != nil || tok.AccessToken != "tok-2" {
		t.Fatalf("first app after other: %q %v", tok.AccessToken, err)
	}
}

// holdLock takes the fetch lock of appID as a replica that then dies.
func holdLock(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	c := ctx(t)
	locks, err := js.KeyValue(c, tokenkv.DefaultLockBucket)
	if err != nil {
		t.Fatal(err)
	}
	key, err := tokenkv.Key(appID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := locks.Create(c, key, []byte("dead-replica")); err != nil {
		t.Fatal(err)
	}
}

func TestStaleLockExpires(t *testing.T) {
	t.Parallel()
	v := newVendor(t, 0)
	a, b, js := replicas(t, tokenkv.Config{LockTTL: time.Second, PollInterval: 20 * time.Millisecond})
	holdLock(t, js)
	c := ctx(t)

	start := time.Now()
	toks := concurrently(t, 6, func(i int) (douyin.Token, error) {
		return source(v, []*tokenkv.Store{a, b}[i%2]).Token(c)
	})
	took := time.Since(start)
	if n := v.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	sameToken(t, toks, "tok-1")
	if took < 500*time.Millisecond || took > 4*time.Second {
		t.Fatalf("took %s; want about the lock TTL (1s)", took)
	}
}

func TestSlowFetchKeepsLock(t *testing.T) {
	t.Parallel()
	// The fetch takes three times the lock TTL; the holder renews its lock
	// so the other replica keeps waiting instead of fetching too.
	v := newVendor(t, 1500*time.Millisecond)
	a, b, _ := replicas(t, tokenkv.Config{LockTTL: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	c := ctx(t)
	sa, sb := source(v, a), source(v, b)
	toks := concurrently(t, 2, func(i int) (douyin.Token, error) {
		if i == 1 {
			time.Sleep(200 * time.Millisecond) // let replica a take the lock
			return sb.Token(c)
		}
		return sa.Token(c)
	})
	if n := v.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	sameToken(t, toks, "tok-1")
}

func TestWaitHonoursContext(t *testing.T) {
	t.Parallel()
	v := newVendor(t, 0)
	_, b, js := replicas(t, tokenkv.Config{})
	holdLock(t, js)

	c, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := b.Replace(c, appID, douyin.Token{}, func(context.Context) (douyin.Token, error) {
		t.Error("fetch called while another replica holds the lock")
		return douyin.Token{}, errors.New("no")
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("returned after %s", took)
	}

	// Through a TokenSource too (its shared wait is detached; the caller's
	// is not).
	c2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := source(v, b).Token(c2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("token source: %v", err)
	}
	if n := v.fetches.Load(); n != 0 {
		t.Fatalf("%d fetches while locked", n)
	}
}

func TestFetchErrorReleasesLock(t *testing.T) {
	t.Parallel()
	a, b, _ := replicas(t, tokenkv.Config{})
	c := ctx(t)
	boom := errors.New("vendor down")
	if _, err := a.Replace(c, appID, douyin.Token{}, func(context.Context) (douyin.Token, error) { return douyin.Token{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("err %v, want the fetch error", err)
	}
	// The lock is free at once, not after LockTTL (30s).
	c2, cancel := context.WithTimeout(c, 2*time.Second)
	defer cancel()
	want := douyin.Token{AccessToken: "fresh", ExpiresAt: time.Now().Add(time.Hour), FetchedAt: time.Now()}
	tok, err := b.Replace(c2, appID, douyin.Token{}, func(context.Context) (douyin.Token, error) { return want, nil })
	if err != nil || tok.AccessToken != "fresh" {
		t.Fatalf("second replica: %q %v", tok.AccessToken, err)
	}
}

func TestExpiredStoredTokenIsReplaced(t *testing.T) {
	t.Parallel()
	a, _, _ := replicas(t, tokenkv.Config{})
	c := ctx(t)
	now := time.Now()
	old := douyin.Token{AccessToken: "old", ExpiresAt: now.Add(-time.Minute), FetchedAt: now.Add(-2 * time.Hour)}
	if _, err := a.Replace(c, appID, douyin.Token{}, func(context.Context) (douyin.Token, error) { return old, nil }); err != nil {
		t.Fatal(err)
	}
	// The stored token differs from stale (zero) but has expired: fetch.
	fetched := false
	tok, err := a.Replace(c, appID, douyin.Token{}, func(context.Context) (douyin.Token, error) {
		fetched = true
		return douyin.Token{AccessToken: "new", ExpiresAt: now.Add(time.Hour), FetchedAt: now}, nil
	})
	if err != nil || !fetched || tok.AccessToken != "new" {
		t.Fatalf("got %q fetched=%v err=%v", tok.AccessToken, fetched, err)
	}
}

func TestConcurrentWriterLaterFetchWins(t *testing.T) {
	t.Parallel()
	a, _, js := replicas(t, tokenkv.Config{})
	c := ctx(t)
	tokens, err := js.KeyValue(c, tokenkv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := tokenkv.Key(appID)
	now := time.Now()
	intrude := func(name string, fetchedAt time.Time) {
		data, _ := json.Marshal(map[string]any{"access_token": name, "expires_at": fetchedAt.Add(2 * time.Hour), "fetched_at": fetchedAt})
		data, err := tokenkv.Seal(a, appID, data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tokens.Put(c, key, data); err != nil {
			t.Fatal(err)
		}
	}
	// Somebody stores a token fetched after ours while we fetch: theirs is
	// the vendor's current one.
	tok, err := a.Replace(c, appID, douyin.Token{}, func(context.Context) (douyin.Token, error) {
		intrude("later", now.Add(time.Second))
		return douyin.Token{AccessToken: "ours", ExpiresAt: now.Add(2 * time.Hour), FetchedAt: now}, nil
	})
	if err != nil || tok.AccessToken != "later" {
		t.Fatalf("got %q %v, want later", tok.AccessToken, err)
	}
	// Somebody stores a token fetched before ours: ours overwrites it.
	tok, err = a.Replace(c, appID, tok, func(context.Context) (douyin.Token, error) {
		intrude("earlier", now.Add(2*time.Second))
		return douyin.Token{AccessToken: "ours", ExpiresAt: now.Add(2 * time.Hour), FetchedAt: now.Add(3 * time.Second)}, nil
	})
	if err != nil || tok.AccessToken != "ours" {
		t.Fatalf("got %q %v, want ours", tok.AccessToken, err)
	}
	if cur, _, err := a.Current(c, appID); err != nil || cur.AccessToken != "ours" {
		t.Fatalf("stored %q %v", cur.AccessToken, err)
	}
}

// TestTokensAreSealed: the bucket holds no token in the clear, a store
// with another secret finds none, and a value that does not open (a
// corrupt one, or a token stored in the clear by an older version) is as
// good as none: the token is fetched again and replaces it.
func TestTokensAreSealed(t *testing.T) {
	t.Parallel()
	var unopened atomic.Int32
	a, _, js := replicas(t, tokenkv.Config{Unopened: func(string) { unopened.Add(1) }})
	c := ctx(t)
	now := time.Now()
	fetch := func(name string) func(context.Context) (douyin.Token, error) {
		return func(context.Context) (douyin.Token, error) {
			return douyin.Token{AccessToken: name, ExpiresAt: now.Add(time.Hour), FetchedAt: now}, nil
		}
	}
	if _, err := a.Replace(c, appID, douyin.Token{}, fetch("s3cr3t-token")); err != nil {
		t.Fatal(err)
	}
	tokens, err := js.KeyValue(c, tokenkv.DefaultBucket)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := tokenkv.Key(appID)
	e, err := tokens.Get(c, key)
	if err != nil || bytes.Contains(e.Value(), []byte("s3cr3t")) || bytes.Contains(e.Value(), []byte("access_token")) {
		t.Fatalf("the bucket holds %q (%v): want it sealed", e.Value(), err)
	}
	other, err := tokenkv.Open(c, js, tokenkv.Config{Secret: func(string) (string, bool) { return "another secret", true }})
	if err != nil {
		t.Fatal(err)
	}
	if tok, found, err := other.Current(c, appID); err != nil || found {
		t.Errorf("a store with another secret found %q (%v)", tok.AccessToken, err)
	}
	for _, stored := range []string{`{"access_token":"clear-token","expires_at":"2099-01-01T00:00:00Z"}`, "\x01garbage"} {
		if _, err := tokens.Put(c, key, []byte(stored)); err != nil {
			t.Fatal(err)
		}
		if tok, found, err := a.Current(c, appID); err != nil || found {
			t.Errorf("%s: found %q (%v), want none", stored, tok.AccessToken, err)
		}
		if tok, err := a.Replace(c, appID, douyin.Token{}, fetch("fresh")); err != nil || tok.AccessToken != "fresh" {
			t.Errorf("%s: Replace got %q (%v), want a fresh token", stored, tok.AccessToken, err)
		}
		if tok, found, err := a.Current(c, appID); err != nil || !found || tok.AccessToken != "fresh" {
			t.Errorf("%s: after Replace %q %v %v", stored, tok.AccessToken, found, err)
		}
	}
	if unopened.Load() < 2 {
		t.Errorf("told of %d tokens that did not open, want each", unopened.Load())
	}
}

func TestKeyAndConfig(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"tt0123456789abcdef": "tt0123456789abcdef",
		"a.b":                "a=2Eb",
		"x:y z":              "x=3Ay=20z",
		"a=b":                "a=3Db",
		"_-":                 "_-",
	} {
		if got, err := tokenkv.Key(in); err != nil || got != want {
			t.Fatalf("Key(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := tokenkv.Key(""); !errors.Is(err, tokenkv.ErrNoAppID) {
		t.Fatalf("Key(\"\"): %v", err)
	}

	js, _, _ := natstest.JetStream(t)
	c := ctx(t)
	if _, err := tokenkv.Open(c, js, tokenkv.Config{Replicas: 9}); !errors.Is(err, tokenkv.ErrInvalidConfig) {
		t.Fatalf("Open with 9 replicas: %v", err)
	}
	// Open is idempotent and sets the lock TTL as the bucket's max age.
	for range 2 {
		if _, err := tokenkv.Open(c, js, tokenkv.Config{Secret: appSecret}); err != nil {
			t.Fatal(err)
		}
	}
	locks, err := js.KeyValue(c, tokenkv.DefaultLockBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := locks.Status(c)
	if err != nil || st.TTL() != tokenkv.DefaultLockTTL {
		t.Fatalf("lock bucket ttl %v %v", st, err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     tokenkv.Config
		wantErr error
	}{
		{"zero but the secret", tokenkv.Config{Secret: appSecret}, nil},
		{"explicit", tokenkv.Config{Bucket: "T", LockBucket: "L", Replicas: 5, LockTTL: tokenkv.MinLockTTL, PollInterval: time.Second, Secret: appSecret}, nil},
		{"no secret to seal tokens with", tokenkv.Config{}, tokenkv.ErrInvalidConfig},
		{"replicas 9", tokenkv.Config{Replicas: 9}, tokenkv.ErrInvalidConfig},
		{"negative replicas", tokenkv.Config{Replicas: -1}, tokenkv.ErrInvalidConfig},
		{"lock TTL too short", tokenkv.Config{LockTTL: time.Millisecond}, tokenkv.ErrInvalidConfig},
		{"negative poll interval", tokenkv.Config{PollInterval: -time.Second}, tokenkv.ErrInvalidConfig},
		{"one bucket for both", tokenkv.Config{Bucket: "X", LockBucket: "X"}, tokenkv.ErrInvalidConfig},
		{"lock bucket named as the default token bucket", tokenkv.Config{LockBucket: tokenkv.DefaultBucket}, tokenkv.ErrInvalidConfig},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Validate() = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
}
