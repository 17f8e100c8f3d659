package douyin

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/retry"
)

func TestTokenValid(t *testing.T) {
	now := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		tok  Token
		want bool
	}{
		{"zero", Token{}, false},
		{"empty string", Token{ExpiresAt: now.Add(time.Hour)}, false},
		{"live", Token{AccessToken: "a", ExpiresAt: now.Add(time.Second)}, true},
		{"at expiry", Token{AccessToken: "a", ExpiresAt: now}, false},
		{"expired", Token{AccessToken: "a", ExpiresAt: now.Add(-time.Second)}, false},
	}
	for _, c := range cases {
		if got := c.tok.Valid(now); got != c.want {
			t.Errorf("%s: Valid = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTokenCached(t *testing.T) {
	f := newFakeVendor(t)
	clock := newFakeClock()
	s := f.source(clock.Now)
	for i := 0; i < 20; i++ {
		tok, err := s.Token(context.Background())
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		if tok.AccessToken != "tok-1" {
			t.Fatalf("token = %q, want tok-1", tok.AccessToken)
		}
		if want := clock.Now().Add(-time.Duration(i) * time.Minute).Add(7200 * time.Second); !tok.ExpiresAt.Equal(want) {
			t.Fatalf("ExpiresAt = %v, want %v", tok.ExpiresAt, want)
		}
		clock.Advance(time.Minute)
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
	reqs := f.tokenRequests()
	if reqs[0].Method != http.MethodPost || reqs[0].Path != "/api/apps/v2/token" {
		t.Fatalf("request %s %s", reqs[0].Method, reqs[0].Path)
	}
	if ct := reqs[0].Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q", ct)
	}
	body := decodeMap(t, reqs[0].Body)
	want := map[string]any{"appid": testAppID, "secret": testSecret, "grant_type": "client_credential"}
	if len(body) != len(want) {
		t.Fatalf("body = %v, want %v", body, want)
	}
	for k, v := range want {
		if body[k] != v {
			t.Fatalf("body[%q] = %v, want %v", k, body[k], v)
		}
	}
}

func TestTokenRefreshedAheadOfExpiry(t *testing.T) {
	f := newFakeVendor(t)
	clock := newFakeClock()
	s := f.source(clock.Now)
	ctx := context.Background()

	get := func(want string, wantFetches int64) {
		t.Helper()
		tok, err := s.Token(ctx)
		if err != nil {
			t.Fatalf("Token: %v", err)
		}
		if tok.AccessToken != want || f.fetches.Load() != wantFetches {
			t.Fatalf("token %q after %d fetches, want %q after %d", tok.AccessToken, f.fetches.Load(), want, wantFetches)
		}
	}
	get("tok-1", 1)
	clock.Advance(time.Hour + 49*time.Minute) // 11m left: still fresh
	get("tok-1", 1)
	clock.Advance(2 * time.Minute) // 9m left: within RefreshBefore (10m)
	get("tok-2", 2)
	get("tok-2", 2)
	clock.Advance(3 * time.Hour) // expired
	get("tok-3", 3)
}

func TestTokenRefreshBeforeCappedAtHalfLife(t *testing.T) {
	f := newFakeVendor(t)
	f.token = func(w http.ResponseWriter, _ *http.Request, n int64) {
		writeJSON(w, http.StatusOK, `{"err_no":0,"data":{"access_token":"short-`+string(rune('0'+n))+`","expires_in":600}}`)
	}
	clock := newFakeClock()
	s := f.source(clock.Now)
	s.RefreshBefore = 30 * time.Minute // longer than the token's whole life
	for i := 0; i < 4; i++ {
		if _, err := s.Token(context.Background()); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Minute)
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1 (a 10m token is fresh for its first 5m)", n)
	}
	clock.Advance(2 * time.Minute) // 6m in: 4m left < 5m
	if tok, err := s.Token(context.Background()); err != nil || tok.AccessToken != "short-2" {
		t.Fatalf("Token = %q, %v; want short-2", tok.AccessToken, err)
	}
}

func TestTokenConcurrentCallersOneFetch(t *testing.T) {
	f := newFakeVendor(t)
	inner := f.token
	f.token = func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(50 * time.Millisecond) // keep the fetch open while callers pile up
		inner(w, r, n)
	}
	s := f.source(nil)
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tok, err := s.Token(context.Background())
			if err == nil && tok.AccessToken != "tok-1" {
				err = errors.New("got " + tok.AccessToken)
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
}

func TestTokenCallerCancelLeavesSharedFetch(t *testing.T) {
	f := newFakeVendor(t)
	release := make(chan struct{})
	inner := f.token
	f.token = func(w http.ResponseWriter, r *http.Request, n int64) {
		<-release
		inner(w, r, n)
	}
	s := f.source(nil)

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := s.Token(ctx)
		first <- err
	}()
	for f.fetches.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan Token, 1)
	go func() {
		tok, err := s.Token(context.Background())
		if err != nil {
			t.Error(err)
		}
		second <- tok
	}()
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) || errors.Is(err, retry.ErrTransient) {
		t.Fatalf("cancelled caller: %v, want context.Canceled and not transient", err)
	}
	close(release)
	if tok := <-second; tok.AccessToken != "tok-1" {
		t.Fatalf("second caller got %q, want tok-1", tok.AccessToken)
	}
	if n := f.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
}

func TestMemoryStoreReplaceAlreadyReplaced(t *testing.T) {
	m := NewMemoryStore()
	ctx := context.Background()
	var fetches atomic.Int64
	fetch := func(tok string) func(context.Context) (Token, error) {
		return func(context.Context) (Token, error) {
			fetches.Add(1)
			return Token{AccessToken: tok, ExpiresAt: time.Now().Add(time.Hour)}, nil
		}
	}
	if _, found, _ := m.Current(ctx, "a"); found {
		t.Fatal("empty store has a token")
	}
	t1, err := m.Replace(ctx, "a", Token{}, fetch("t1"))
	if err != nil || t1.AccessToken != "t1" {
		t.Fatalf("first Replace = %q, %v", t1.AccessToken, err)
	}
	t2, err := m.Replace(ctx, "a", t1, fetch("t2"))
	if err != nil || t2.AccessToken != "t2" {
		t.Fatalf("second Replace = %q, %v", t2.AccessToken, err)
	}
	// t1 is stale but already replaced: no fetch, t2 comes back.
	got, err := m.Replace(ctx, "a", t1, fetch("t3"))
	if err != nil || got.AccessToken != "t2" {
		t.Fatalf("Replace(already replaced) = %q, %v; want t2", got.AccessToken, err)
	}
	// A zero stale token means "none stored"; one is stored, so no fetch.
	if got, _ := m.Replace(ctx, "a", Token{}, fetch("t4")); got.AccessToken != "t2" {
		t.Fatalf("Replace(zero) = %q; want t2", got.AccessToken)
	}
	if n := fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	if cur, found, _ := m.Current(ctx, "a"); !found || cur.AccessToken != "t2" {
		t.Fatalf("Current = %q %v", cur.AccessToken, found)
	}
	// Another appid is independent.
	if _, found, _ := m.Current(ctx, "b"); found {
		t.Fatal("appid b has a token")
	}
}

func TestMemoryStoreConcurrentReplaceOneFetch(t *testing.T) {
	m := NewMemoryStore()
	ctx := context.Background()
	stale, _ := m.Replace(ctx, "a", Token{}, func(context.Context) (Token, error) {
		return Token{AccessToken: "old"}, nil
	})
	var fetches atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := m.Replace(ctx, "a", stale, func(context.Context) (Token, error) {
				fetches.Add(1)
				time.Sleep(10 * time.Millisecond)
				return Token{AccessToken: "new"}, nil
			})
			if err != nil || got.AccessToken != "new" {
				t.Errorf("Replace = %q, %v", got.AccessToken, err)
			}
		}()
	}
	wg.Wait()
	if n := fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}
}

func TestMemoryStoreReplaceFetchErrorKeepsOld(t *testing.T) {
	m := NewMemoryStore()
	ctx := context.Background()
	old, _ := m.Replace(ctx, "a", Token{}, func(context.Context) (Token, error) { return Token{AccessToken: "old"}, nil })
	boom := errors.New("boom")
	if _, err := m.Replace(ctx, "a", old, func(context.Context) (Token, error) { return Token{}, boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v, want boom", err)
	}
	if cur, _, _ := m.Current(ctx, "a"); cur.AccessToken != "old" {
		t.Fatalf("Current = %q, want old", cur.AccessToken)
	}
}

func TestInvalidateFetchesOnce(t *testing.T) {
	f := newFakeVendor(t)
	s := f.source(nil)
	ctx := context.Background()
	t1, err := s.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t2, err := s.Invalidate(ctx, t1)
	if err != nil || t2.AccessToken != "tok-2" {
		t.Fatalf("Invalidate = %q, %v; want tok-2", t2.AccessToken, err)
	}
	// A second report about the same bad token (another caller, late)
	// must not fetch again.
	again, err := s.Invalidate(ctx, t1)
	if err != nil || again.AccessToken != "tok-2" {
		t.Fatalf("Invalidate again = %q, %v; want tok-2", again.AccessToken, err)
	}
	if tok, _ := s.Token(ctx); tok.AccessToken != "tok-2" {
		t.Fatalf("Token = %q, want tok-2", tok.AccessToken)
	}
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestInvalidateConcurrentOneFetch(t *testing.T) {
	f := newFakeVendor(t)
	inner := f.token
	f.token = func(w http.ResponseWriter, r *http.Request, n int64) {
		time.Sleep(20 * time.Millisecond)
		inner(w, r, n)
	}
	s := f.source(nil)
	ctx := context.Background()
	bad, _ := s.Token(ctx)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := s.Invalidate(ctx, bad); err != nil || tok.AccessToken != "tok-2" {
				t.Errorf("Invalidate = %q, %v", tok.AccessToken, err)
			}
		}()
	}
	wg.Wait()
	if n := f.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
}

func TestTokenErrors(t *testing.T) {
	cases := []struct {
		name    string
		status  int
		body    string
		wantErr error
		errNo   int64
	}{
		{"system error", 200, `{"err_no":-1,"err_tips":"system error"}`, retry.ErrTransient, -1},
		{"bad appid", 200, `{"err_no":40015,"err_tips":"bad appid"}`, retry.ErrPermanent, 40015},
		{"bad secret", 200, `{"err_no":40017,"err_tips":"bad secret"}`, retry.ErrPermanent, 40017},
		{"bad grant_type", 200, `{"err_no":40020,"err_tips":"bad grant_type"}`, retry.ErrPermanent, 40020},
		{"unknown code", 200, `{"err_no":12345,"err_tips":"?"}`, retry.ErrPermanent, 12345},
		{"5xx no body", 502, ``, retry.ErrTransient, 0},
		{"5xx html", 503, `<html>busy</html>`, retry.ErrTransient, 0},
		{"429", 429, ``, retry.ErrThrottled, 0},
		{"non-JSON 200", 200, `<html>hi</html>`, retry.ErrPermanent, 0},
		{"no token", 200, `{"err_no":0,"data":{"access_token":"","expires_in":7200}}`, retry.ErrPermanent, 0},
		{"no expiry", 200, `{"err_no":0,"data":{"access_token":"x","expires_in":0}}`, retry.ErrPermanent, 0},
		{"403", 403, `{"err_no":0}`, retry.ErrPermanent, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeVendor(t)
			f.token = func(w http.ResponseWriter, _ *http.Request, _ int64) { writeJSON(w, c.status, c.body) }
			s := f.source(nil)
			_, err := s.Token(context.Background())
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("err = %v, want %v", err, c.wantErr)
			}
			if c.wantErr == retry.ErrPermanent && errors.Is(err, retry.ErrTransient) {
				t.Fatalf("permanent error also matches transient: %v", err)
			}
			if errors.Is(err, retry.ErrAmbiguous) {
				t.Fatalf("token error is ambiguous: %v", err)
			}
			var te *TokenError
			if !errors.As(err, &te) || te.ErrNo != c.errNo || te.HTTPStatus != c.status {
				t.Fatalf("TokenError = %+v, want ErrNo %d HTTP %d", te, c.errNo, c.status)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Fatalf("error leaks the secret: %v", err)
			}
			// A failed fetch stores nothing; the next call fetches again.
			_, _ = s.Token(context.Background())
			if n := f.fetches.Load(); n != 2 {
				t.Fatalf("fetches = %d, want 2", n)
			}
		})
	}
}

func TestTokenTransportErrors(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		s := &TokenSource{AppID: testAppID, Secret: testSecret, BaseURL: refusedURL(t)}
		_, err := s.Token(context.Background())
		var te *TransportError
		if !errors.Is(err, retry.ErrTransient) || errors.Is(err, retry.ErrAmbiguous) || !errors.As(err, &te) || te.Op != "token" {
			t.Fatalf("err = %v, want a transient, unambiguous token TransportError", err)
		}
		if strings.Contains(err.Error(), testSecret) {
			t.Fatalf("error leaks the secret: %v", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		f := newFakeVendor(t)
		f.token = func(_ http.ResponseWriter, r *http.Request, _ int64) {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
		}
		s := f.source(nil)
		s.Timeout = 50 * time.Millisecond
		_, err := s.Token(context.Background())
		if !errors.Is(err, retry.ErrTransient) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, retry.ErrAmbiguous) {
			t.Fatalf("err = %v, want transient, DeadlineExceeded, not ambiguous", err)
		}
	})
}

func TestTokenSourceConfig(t *testing.T) {
	if _, err := (&TokenSource{Secret: "x"}).Token(context.Background()); !errors.Is(err, ErrNoAppID) {
		t.Fatalf("no appid: %v", err)
	}
	if _, err := (&TokenSource{AppID: "x"}).Invalidate(context.Background(), Token{}); !errors.Is(err, ErrNoSecret) {
		t.Fatalf("no secret: %v", err)
	}
}

// failingStore is a token store whose broker is down.
type failingStore struct{ err error }

func (f failingStore) Current(context.Context, string) (Token, bool, error) {
	return Token{}, false, f.err
}
func (f failingStore) Replace(context.Context, string, Token, func(context.Context) (Token, error)) (Token, error) {
	return Token{}, f.err
}

func TestTokenStoreFailureIsTransient(t *testing.T) {
	down := errors.New("nats: no responders available for request")
	src := &TokenSource{AppID: "tt1", Secret: "s", BaseURL: "http://127.0.0.1:1", Store: failingStore{err: down}}
	_, err := src.Token(context.Background())
	if !errors.Is(err, retry.ErrTransient) || !errors.Is(err, down) {
		t.Fatalf("err = %v, want transient wrapping the store error", err)
	}
	_, err = src.Invalidate(context.Background(), Token{AccessToken: "x"})
	if !errors.Is(err, retry.ErrTransient) {
		t.Fatalf("Invalidate err = %v, want transient", err)
	}
}
