// Package console is the web console for the people who answer for the
// filings: compliance staff find a filing by any id or name they know,
// read its history, export its proof; operators settle dead letters and
// ambiguous filings with a reason. It is server-rendered HTML
// (html/template, one small script that shows times in the viewer's
// zone), read from the read model (package readmodel) and, for one
// filing, from the streams themselves; an operator's order is carried out
// by the consumer's control service, under the signed-in user's name.
package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"sync"
	"time"
	_ "time/tzdata" // the viewer's zone, in an image without a zone database

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/readmodel"
	"github.com/qualfile/qualfile/messages"
)

//go:embed templates/*.html static/*
var files embed.FS

// Roles of the console's users.
const (
	RoleOperator = "operator" // reads everything; replays, resolves, removes
	RoleAuditor  = "auditor"  // reads, personal data masked; changes nothing
)

// User may sign in to the console.
type User struct {
	Name         string // the operator's name in the trail
	Role         string
	PasswordHash string // bcrypt; "" signs in through the trusted header only
}

// Orders carries out operators' orders (*control.Service).
type Orders interface {
	Give(operator string, a control.Action, o control.Order) (control.Report, error)
}

// Config is what the console is built from.
type Config struct {
	Model    *readmodel.Model
	JS       jetstream.JetStream
	Ledger   operator.TrailLedger
	Subjects messages.Subjects
	Orders   Orders
	Users    []User
	// TrustedHeader names the header in which an authenticating proxy
	// names the user (one of Users); "" trusts no header.
	TrustedHeader string
	Session       time.Duration // default 8h
	SecureCookies bool
	Now           func() time.Time
	Log           *zap.Logger
}

// Server serves the console.
type Server struct {
	cfg   Config
	users map[string]User
	pages map[string]*template.Template

	mu       sync.Mutex
	sessions map[string]*session
	once     map[string]onceLink
	proxied  map[string]string // the form token of each user the proxy signs in
	// attempts slows down guessing passwords: every sign-in takes a token
	// before its password is checked.
	attempts *rate.Limiter
}

// New builds the console.
func New(cfg Config) (*Server, error) {
	if cfg.Model == nil || cfg.JS == nil || cfg.Orders == nil {
		return nil, errors.New("console: Config.Model, JS and Orders are required")
	}
	if cfg.Session <= 0 {
		cfg.Session = 8 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	s := &Server{cfg: cfg, users: map[string]User{}, sessions: map[string]*session{}, once: map[string]onceLink{}, proxied: map[string]string{},
		attempts: rate.NewLimiter(rate.Every(time.Second), 10)}
	for _, u := range cfg.Users {
		if !control.ValidOperator(u.Name) || (u.Role != RoleOperator && u.Role != RoleAuditor) {
			return nil, fmt.Errorf("console: user %q: a name of lower-case letters, digits and _, and the role operator or auditor", u.Name)
		}
		s.users[u.Name] = u
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s.pages = pages
	return s, nil
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(files, "templates/*.html")
	if err != nil {
		return nil, err
	}
	out := map[string]*template.Template{}
	for _, name := range names {
		if name == "templates/layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", name)
		if err != nil {
			return nil, fmt.Errorf("console: %s: %w", name, err)
		}
		out[name[len("templates/"):len(name)-len(".html")]] = t
	}
	return out, nil
}

// Handler is the console's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(files, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /signin", s.signInPage)
	mux.HandleFunc("POST /signin", s.signIn)
	mux.HandleFunc("GET /signin/once", s.signInOnce)
	mux.HandleFunc("POST /signout", s.signed(s.signOut))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/filings", http.StatusSeeOther) })
	mux.HandleFunc("GET /filings", s.signed(s.filings))
	mux.HandleFunc("GET /filings.csv", s.signed(s.filingsCSV))
	mux.HandleFunc("GET /filing", s.signed(s.aFiling(s.filing)))
	mux.HandleFunc("GET /proof", s.signed(s.aFiling(s.proof)))
	mux.HandleFunc("GET /work", s.signed(s.work))
	mux.HandleFunc("GET /overview", s.signed(s.overview))
	mux.HandleFunc("POST /act", s.signed(s.act))
	return headers(mux)
}

// headers sets what every answer carries: no framing, no script or style
// from elsewhere, no caching of pages that hold filings.
func headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		// Not no-referrer: a browser then sends "Origin: null" with the
		// console's own forms, which the same-origin check refuses.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		if len(r.URL.Path) < 8 || r.URL.Path[:8] != "/static/" {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

// Serve serves h on ln until ctx ends, then lets the requests being
// answered finish for a few seconds, cancels those still running and
// returns once every handler has: none outlives it.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	base, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handlers running
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !handlers.enter() {
				http.Error(w, "the console is stopping", http.StatusServiceUnavailable)
				return
			}
			defer handlers.wg.Done()
			h.ServeHTTP(w, r)
		}),
		BaseContext:       func(net.Listener) context.Context { return base },
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: time.Minute,
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		cancel()
		handlers.close()
		return err
	case <-ctx.Done():
	}
	sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	if srv.Shutdown(sctx) != nil {
		cancel() // the slow ones: their reads and writes end with their context
		_ = srv.Close()
	}
	<-done
	cancel()
	handlers.close()
	return nil
}

// running counts the handlers at work, and lets none start once closed.
type running struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

func (r *running) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.wg.Add(1)
	return true
}

// close lets no handler start, and waits for those at work.
func (r *running) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.wg.Wait()
}
