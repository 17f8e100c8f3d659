package douyin

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/qualfile/qualfile/internal/dispatch/vendorhttp"
	"github.com/qualfile/qualfile/internal/retry"
)

// Token is a Douyin access token.
type Token struct {
	AccessToken string    // never log it
	ExpiresAt   time.Time // FetchedAt plus the vendor's expires_in
	FetchedAt   time.Time // when the fetch that produced it started
}

// Valid reports whether t holds a token that has not expired at now.
func (t Token) Valid(now time.Time) bool {
	return t.AccessToken != "" && now.Before(t.ExpiresAt)
}

// TokenStore holds the current token per appid, where replicas meet: they
// must share one token per appid (docs/vendors.md, "Douyin tokens and
// errors"; package tokenkv implements it over JetStream KV).
type TokenStore interface {
	// Current returns the stored token for appID, found false for none.
	Current(ctx context.Context, appID string) (tok Token, found bool, err error)
	// Replace returns the stored token if its AccessToken differs from
	// stale's (somebody refreshed it already); otherwise it calls fetch,
	// stores and returns the result. A zero stale token means "none".
	Replace(ctx context.Context, appID string, stale Token, fetch func(context.Context) (Token, error)) (Token, error)
}

// MemoryStore is a TokenStore for one process: Replace calls for one appid
// are serialised, and Current never waits for a fetch. Use NewMemoryStore.
type MemoryStore struct {
	mu      sync.Mutex
	entries map[string]*memoryEntry
}

type memoryEntry struct {
	lock  chan struct{} // held (one element) while a Replace runs
	tok   Token         // guarded by MemoryStore.mu
	found bool          // guarded by MemoryStore.mu
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{entries: make(map[string]*memoryEntry)}
}

func (s *MemoryStore) entry(appID string) *memoryEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.entries[appID]
	if !ok {
		e = &memoryEntry{lock: make(chan struct{}, 1)}
		s.entries[appID] = e
	}
	return e
}

// Current implements TokenStore.
func (s *MemoryStore) Current(_ context.Context, appID string) (Token, bool, error) {
	e := s.entry(appID)
	s.mu.Lock()
	defer s.mu.Unlock()
	return e.tok, e.found, nil
}

// Replace implements TokenStore. Waiting for another Replace of the same
// appid ends early when ctx is done.
func (s *MemoryStore) Replace(ctx context.Context, appID string, stale Token, fetch func(context.Context) (Token, error)) (Token, error) {
	e := s.entry(appID)
	select {
	case e.lock <- struct{}{}:
	case <-ctx.Done():
		return Token{}, ctx.Err()
	}
	defer func() { <-e.lock }()

	s.mu.Lock()
	cur, found := e.tok, e.found
	s.mu.Unlock()
	if found && cur.AccessToken != stale.AccessToken {
		return cur, nil
	}
	tok, err := fetch(ctx)
	if err != nil {
		return Token{}, err
	}
	s.mu.Lock()
	e.tok, e.found = tok, true
	s.mu.Unlock()
	return tok, nil
}

// Defaults of TokenSource.
const (
	DefaultRefreshBefore = 10 * time.Minute
	DefaultTimeout       = 10 * time.Second
)

// TokenSource fetches and caches the access token of one app; set its
// fields before first use. Concurrent callers share one fetch, in one
// process (singleflight) and across replicas (the Store).
type TokenSource struct {
	AppID   string     // required
	Secret  string     // required
	BaseURL string     // the token host; default ProductionBaseURL
	Store   TokenStore // default a private MemoryStore
	// RefreshBefore: a token is refreshed once it has less than this left,
	// or less than half its lifetime if that is shorter; default 10m.
	RefreshBefore time.Duration
	// HTTPClient is used for the fetch; default a client of this package's
	// own. A 3xx reply is never followed: it is a *TokenError (ErrRedirect).
	HTTPClient *http.Client
	Timeout    time.Duration    // bounds one fetch; default 10s
	Now        func() time.Time // default time.Now

	once  sync.Once
	store TokenStore
	group singleflight.Group
}

var _ TokenProvider = (*TokenSource)(nil)

func (s *TokenSource) tokenStore() TokenStore {
	s.once.Do(func() {
		s.store = s.Store
		if s.store == nil {
			s.store = NewMemoryStore()
		}
	})
	return s.store
}

func (s *TokenSource) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *TokenSource) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultTimeout
}

func (s *TokenSource) check() error {
	if s.AppID == "" {
		return ErrNoAppID
	}
	if s.Secret == "" {
		return ErrNoSecret
	}
	return nil
}

// fresh reports whether t can be handed out at now without a refresh.
func (s *TokenSource) fresh(t Token, now time.Time) bool {
	if !t.Valid(now) {
		return false
	}
	margin := s.RefreshBefore
	if margin <= 0 {
		margin = DefaultRefreshBefore
	}
	if life := t.ExpiresAt.Sub(t.FetchedAt); !t.FetchedAt.IsZero() && life > 0 && margin > life/2 {
		margin = life / 2
	}
	return t.ExpiresAt.Sub(now) > margin
}

// Token returns the app's access token: the stored one while it is fresh,
// otherwise a new one. ctx bounds the wait, not a fetch under way.
func (s *TokenSource) Token(ctx context.Context) (Token, error) {
	if err := s.check(); err != nil {
		return Token{}, err
	}
	cur, found, err := s.tokenStore().Current(ctx, s.AppID)
	if err != nil {
		return Token{}, storeError("reading the token store", err)
	}
	if found && s.fresh(cur, s.now()) {
		return cur, nil
	}
	var stale Token
	if found {
		stale = cur
	}
	return s.replace(ctx, stale)
}

// Invalidate tells the source that the vendor rejected bad and returns a
// new token, fetching one unless somebody already replaced bad.
func (s *TokenSource) Invalidate(ctx context.Context, bad Token) (Token, error) {
	if err := s.check(); err != nil {
		return Token{}, err
	}
	return s.replace(ctx, bad)
}

// replace runs Store.Replace for stale once per process at a time. The
// shared call is detached from any one caller's cancellation (each caller
// stops waiting when its own ctx is done) and bounded by three timeouts:
// reading the store, the fetch, writing the store.
func (s *TokenSource) replace(ctx context.Context, stale Token) (Token, error) {
	if err := ctx.Err(); err != nil {
		return Token{}, fmt.Errorf("douyin: access token: %w", err)
	}
	ch := s.group.DoChan(stale.AccessToken, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*s.timeout())
		defer cancel()
		return s.tokenStore().Replace(fctx, s.AppID, stale, s.fetch)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return Token{}, storeError("replacing the token", r.Err)
		}
		return r.Val.(Token), nil
	case <-ctx.Done():
		return Token{}, fmt.Errorf("douyin: waiting for the access token: %w", ctx.Err())
	}
}

type tokenRequest struct {
	AppID     string `json:"appid"`
	Secret    string `json:"secret"`
	GrantType string `json:"grant_type"`
}

type tokenReply struct {
	ErrNo   int64  `json:"err_no"`
	ErrTips string `json:"err_tips"`
	Data    struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	} `json:"data"`
}

// fetch asks the vendor for a new token.
func (s *TokenSource) fetch(ctx context.Context) (Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()

	body, err := json.Marshal(tokenRequest{AppID: s.AppID, Secret: s.Secret, GrantType: "client_credential"})
	if err != nil {
		return Token{}, fmt.Errorf("douyin: encoding the token request: %w", err)
	}
	base := strings.TrimRight(cmp.Or(s.BaseURL, ProductionBaseURL), "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/apps/v2/token", bytes.NewReader(body))
	if err != nil {
		return Token{}, fmt.Errorf("douyin: building the token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")

	fetchedAt := s.now()
	resp, err := noRedirects(s.HTTPClient).Do(req)
	if err != nil {
		return Token{}, &TransportError{Op: "token", Err: err}
	}
	defer resp.Body.Close()
	if vendorhttp.IsRedirect(resp.StatusCode) {
		return Token{}, &TokenError{
			ErrTips:    "redirected to " + vendorhttp.RedirectTarget(resp) + "; not followed, the request carries the app secret",
			HTTPStatus: resp.StatusCode, class: ErrRedirect,
		}
	}
	raw, tooLarge, err := vendorhttp.ReadBody(resp, maxBody)
	if err != nil {
		return Token{}, &TransportError{Op: "token", Err: err}
	}

	fail := func(errNo int64, tips string) error {
		return &TokenError{ErrNo: errNo, ErrTips: tips, HTTPStatus: resp.StatusCode}
	}
	var rep tokenReply
	if tooLarge {
		return Token{}, fail(0, "reply larger than 4 MiB")
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		return Token{}, fail(0, "reply is not the documented JSON")
	}
	if rep.ErrNo != 0 {
		return Token{}, fail(rep.ErrNo, rep.ErrTips)
	}
	if resp.StatusCode != http.StatusOK {
		return Token{}, fail(0, http.StatusText(resp.StatusCode))
	}
	if rep.Data.AccessToken == "" || rep.Data.ExpiresIn <= 0 {
		return Token{}, fail(0, "reply without access_token or expires_in")
	}
	return Token{
		AccessToken: rep.Data.AccessToken,
		ExpiresAt:   fetchedAt.Add(time.Duration(rep.Data.ExpiresIn) * time.Second),
		FetchedAt:   fetchedAt,
	}, nil
}

// storeError classifies an error the token store did not classify itself
// (a broker timeout, no responders) as transient: the filing may go through
// later. Errors of the token endpoint pass unchanged.
func storeError(op string, err error) error {
	if errors.Is(err, retry.ErrTransient) || errors.Is(err, retry.ErrPermanent) || errors.Is(err, retry.ErrInvalid) {
		return err
	}
	return fmt.Errorf("douyin: %s: %w: %w", op, retry.ErrTransient, err)
}
