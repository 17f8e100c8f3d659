package sandbox

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/qualfile/qualfile/messages"
)

// Default credentials the sandbox accepts when Config names none. They are
// sandbox values, not secrets.
const (
	DefaultAccessKeyID     = "AKLTsandboxqualfile"
	DefaultSecretAccessKey = "c2FuZGJveC1zZWNyZXQ="
	DefaultAppID           = "ttsandbox0000000001"
	DefaultAppSecret       = "sandbox-app-secret"
)

// Other defaults of Config.
const (
	DefaultTokenTTL = 2 * time.Hour
	// DefaultRegion is echoed when a request carries no credential scope.
	DefaultRegion = "cn-north-1"
)

// TokenAPI names the Douyin token endpoint in Fault.API and Call.API. It is
// not one of the five filing calls, so a Fault with API "" never matches it.
const TokenAPI messages.API = "douyin.token"

// The read calls the sandbox answers, named in Fault.API and Call.API. A
// Fault with API "" matches them as it matches the five filing calls: an
// outage of a vendor takes its reads down too.
const (
	QueryQualificationAPI messages.API = "vms.query_qualification"
	SignatureIdentListAPI messages.API = "sms.get_signature_ident_list"
)

// TokenCutoff is how long an earlier token of an appid stays valid, at most,
// after a new token is issued for that appid.
const TokenCutoff = 5 * time.Minute

// Config configures a Server. The zero value is usable.
type Config struct {
	// Addr is the listen address; default "127.0.0.1:0". Only loopback
	// addresses (127.0.0.0/8, ::1, localhost) are accepted.
	Addr string
	// Keys maps Volcengine access key ids to secret access keys; default
	// {DefaultAccessKeyID: DefaultSecretAccessKey}.
	Keys map[string]string
	// Apps maps Douyin appids to app secrets; default
	// {DefaultAppID: DefaultAppSecret}.
	Apps map[string]string
	// TokenTTL is the lifetime of a Douyin access token; default 2h.
	TokenTTL time.Duration
	// MaxClockSkew is how far X-Date may be from Now; default 15m.
	MaxClockSkew time.Duration
	// MaxBodyBytes is the largest request body accepted; default 32 MiB.
	MaxBodyBytes int64
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Seed seeds the generator that decides Fraction faults.
	Seed int64
	// ErrorLog is handed to the http.Server started by Start; nil keeps the
	// http package's default.
	ErrorLog *log.Logger
}

// Server is the simulator. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	handler http.Handler

	mu       sync.Mutex
	calls    []Call
	faults   []*faultEntry
	faultSeq int
	rng      *mrand.Rand
	w        *world

	idSeq atomic.Uint64 // RequestId / X-Tt-Logid sequence, never reset

	// lifecycle
	lmu     sync.Mutex
	ln      net.Listener
	srv     *http.Server
	served  chan struct{}
	closing chan struct{}
	closed  bool

	hmu    sync.Mutex
	hcond  *sync.Cond
	active int
}

// New validates cfg, fills in the defaults and returns a Server holding the
// seed state. It does not listen; call Start, or mount Handler.
func New(cfg Config) (*Server, error) {
	cfg.Addr = cmp.Or(cfg.Addr, "127.0.0.1:0")
	if err := checkLoopback(cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.TokenTTL < 0 || cfg.MaxClockSkew < 0 || cfg.MaxBodyBytes < 0 {
		return nil, errors.New("sandbox: TokenTTL, MaxClockSkew and MaxBodyBytes must not be negative")
	}
	cfg.TokenTTL = cmp.Or(cfg.TokenTTL, DefaultTokenTTL)
	cfg.MaxClockSkew = cmp.Or(cfg.MaxClockSkew, 15*time.Minute)
	cfg.MaxBodyBytes = cmp.Or(cfg.MaxBodyBytes, 32<<20)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Keys = copyMap(cfg.Keys, DefaultAccessKeyID, DefaultSecretAccessKey)
	cfg.Apps = copyMap(cfg.Apps, DefaultAppID, DefaultAppSecret)
	for k, v := range cfg.Keys {
		if k == "" || v == "" {
			return nil, errors.New("sandbox: access key ids and secrets must not be empty")
		}
	}
	for k, v := range cfg.Apps {
		if k == "" || v == "" {
			return nil, errors.New("sandbox: appids and app secrets must not be empty")
		}
	}
	s := &Server{cfg: cfg, closing: make(chan struct{}), rng: newRNG(cfg.Seed), w: seedWorld()}
	s.hcond = sync.NewCond(&s.hmu)
	s.handler = s.track(s.routes())
	return s, nil
}

func copyMap(m map[string]string, defKey, defVal string) map[string]string {
	if len(m) == 0 {
		return map[string]string{defKey: defVal}
	}
	return maps.Clone(m)
}

func newRNG(seed int64) *mrand.Rand {
	return mrand.New(mrand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
}

// checkLoopback refuses any address that is not on a loopback interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("sandbox: bad listen address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("sandbox: listen address %q is not a loopback address; the sandbox only listens on 127.0.0.1, ::1 or localhost", addr)
	}
	return nil
}

// Start listens on Config.Addr and serves in a goroutine until Close.
func (s *Server) Start() error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.closed {
		return errors.New("sandbox: server is closed")
	}
	if s.ln != nil {
		return errors.New("sandbox: server already started")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sandbox: listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          s.cfg.ErrorLog,
	}
	s.served = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed after Close
	}(s.srv, s.served)
	return nil
}

// URL is the base URL of the started server, e.g. "http://127.0.0.1:41234",
// or "" before Start.
func (s *Server) URL() string {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String()
}

// Handler serves every route of the sandbox; use it to mount the sandbox in
// an httptest.Server instead of calling Start.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the server started by Start, ends pending latency faults and
// waits for the serving goroutine and every running handler to return.
// Closing twice, or a server never started, is harmless.
func (s *Server) Close() error {
	s.lmu.Lock()
	if s.closed {
		s.lmu.Unlock()
		return nil
	}
	s.closed = true
	close(s.closing)
	srv, served := s.srv, s.served
	s.lmu.Unlock()

	var err error
	if srv != nil {
		err = srv.Close()
		<-served
	}
	s.hmu.Lock()
	for s.active > 0 {
		s.hcond.Wait()
	}
	s.hmu.Unlock()
	return err
}

// track counts running handlers so that Close can wait for them.
func (s *Server) track(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hmu.Lock()
		s.active++
		s.hmu.Unlock()
		defer func() {
			s.hmu.Lock()
			s.active--
			if s.active == 0 {
				s.hcond.Broadcast()
			}
			s.hmu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// Reset puts the state back to the seed: qualifications, SMS idents, Douyin
// roles, class auths, tokens and token counts; it clears calls and faults
// and re-seeds the fault generator.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.w = seedWorld()
	s.calls = nil
	s.faults = nil
	s.rng = newRNG(s.cfg.Seed)
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", s.serveRoot)
	mux.HandleFunc("/api/apps/v2/token", s.serveToken)
	mux.HandleFunc("/auth/entity/add_role", s.douyinHandler(messages.APIDouyinAddRole))
	mux.HandleFunc("/auth/entity/get_class_auth", s.douyinHandler(messages.APIDouyinGetClassAuth))
	s.adminRoutes(mux)
	return mux
}

// serveRoot answers Volcengine calls, and a short index to a plain GET /.
func (s *Server) serveRoot(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.RawQuery == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, indexText)
		return
	}
	s.serveVolcengine(w, r)
}

const indexText = `qualfile sandbox: a simulator of Volcengine VMS/SMS and the Douyin open platform.

POST /?Action=AddQualification&Version=2022-01-01      (Volcengine signature, service vms)
POST /?Action=UpdateQualification&Version=2022-01-01   (Volcengine signature, service vms)
POST /?Action=ApplySignatureIdent&Version=2021-01-11   (Volcengine signature, service volcSMS)
POST /api/apps/v2/token
POST /auth/entity/add_role
POST /auth/entity/get_class_auth

GET /_sandbox/calls   GET|POST|DELETE /_sandbox/faults   POST /_sandbox/reset   GET /_sandbox/state   POST /_sandbox/review
`

var errTooLarge = errors.New("request body too large")

// readBody reads at most MaxBodyBytes; a longer body returns the bytes read
// and errTooLarge.
func (s *Server) readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	limit := s.cfg.MaxBodyBytes
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return body, err
	}
	if int64(len(body)) > limit {
		return body[:limit], errTooLarge
	}
	return body, nil
}

// wait sleeps for d, returning false when the request's context ends or the
// server closes first.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.closing:
		return false
	}
}

// newRequestID returns a Volcengine-style RequestId: 14 digits of time,
// 3 of milliseconds, 9 of a sequence and 6 hex digits, 32 characters.
func (s *Server) newRequestID(now time.Time) string {
	n := s.idSeq.Add(1)
	return fmt.Sprintf("%s%03d%09d%06X", now.UTC().Format("20060102150405"), now.Nanosecond()/1e6, n%1e9, mrand.Uint32()&0xFFFFFF)
}

// newLogID returns a Douyin-style X-Tt-Logid: 14 digits of time and 20
// upper-case hex digits.
func (s *Server) newLogID(now time.Time) string {
	n := s.idSeq.Add(1)
	return fmt.Sprintf("%s%08X%012X", now.UTC().Format("20060102150405"), uint32(n), mrand.Uint64()&0xFFFFFFFFFFFF)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// writeJSON writes v as JSON with status, without HTML escaping.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeBare writes a bare HTTP status with a small HTML body, as a gateway
// in front of the vendor would.
func writeBare(w http.ResponseWriter, status int) {
	text := http.StatusText(status)
	if text == "" {
		text = "Error"
	}
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n<hr><center>sandbox</center>\r\n</body>\r\n</html>\r\n", status, text, status, text)
}

// StatusClientGone is recorded for a call whose client went away (or whose
// server closed) while a latency fault was pending; nothing is answered.
const StatusClientGone = 499

// exchange is one request to a vendor route being answered.
type exchange struct {
	s    *Server
	w    http.ResponseWriter
	r    *http.Request
	call Call
}

// answer writes v as JSON with status and records the call with code.
func (x *exchange) answer(status int, v any, code string, fault bool) {
	writeJSON(x.w, status, v)
	x.call.HTTPStatus, x.call.Code, x.call.Fault = status, code, fault
	x.s.record(x.call)
}

// applyFault runs the first fault that fires for the call: it waits the
// latency, then answers a bare status, or a fault with a code through
// answer, with HTTPStatus defaulted. It reports whether the call was answered and recorded.
func (x *exchange) applyFault(answer func(Fault)) bool {
	f, ok := x.s.pickFault(x.call.API)
	if !ok {
		return false
	}
	switch {
	case !x.s.wait(x.r.Context(), f.Latency):
		x.call.HTTPStatus = StatusClientGone
	case f.Code != "":
		f.HTTPStatus = cmp.Or(f.HTTPStatus, http.StatusOK)
		answer(f)
		return true
	case f.HTTPStatus != 0 && f.HTTPStatus != http.StatusOK:
		writeBare(x.w, f.HTTPStatus)
		x.call.HTTPStatus = f.HTTPStatus
	default:
		return false // latency only
	}
	x.call.Fault = true
	x.s.record(x.call)
	return true
}
