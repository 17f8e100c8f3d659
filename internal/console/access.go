package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// Cookies: the session, and the sign-in form's token against forged
// sign-ins (a double submit, before there is a session).
const (
	sessionCookie = "qualfile_session"
	signInCookie  = "qualfile_signin"
)

// session is one signed-in user, until expires.
type session struct {
	user    User
	csrf    string // every form of the session carries it
	expires time.Time
}

// onceLink is a sign-in link that works once, before expires.
type onceLink struct {
	user    User
	expires time.Time
}

func token() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// OneTimeLink returns a path that signs its first visitor in as user,
// within a day: the sandbox prints one in the consumer's log, as Jupyter
// does.
func (s *Server) OneTimeLink(user User) string {
	t := token()
	s.mu.Lock()
	s.once[t] = onceLink{user: user, expires: s.cfg.Now().Add(24 * time.Hour)}
	s.mu.Unlock()
	return "/signin/once?token=" + t
}

// signed serves h to a signed-in user; anyone else is sent to sign in.
// A state-changing request must carry its session's token and come from
// the console's own pages.
func (s *Server) signed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.current(r)
		if sess == nil {
			if r.Method != http.MethodGet {
				http.Error(w, "signed out: sign in again", http.StatusUnauthorized)
				return
			}
			language(w, r) // a language asked for holds on the sign-in page
			http.Redirect(w, r, "/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method != http.MethodGet {
			if !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(sess.csrf)) != 1 {
				s.cfg.Log.Warn("console: a state-changing request without its session's token or from another site was refused",
					zap.String("user", sess.user.Name), zap.String("path", r.URL.Path))
				http.Error(w, "refused: this form did not come from the console (reload the page and try again)", http.StatusForbidden)
				return
			}
		}
		h(w, r, sess)
	}
}

// current is the request's session: its cookie's, unexpired, or one
// made for the user the trusted header names.
func (s *Server) current(r *http.Request) *session {
	now := s.cfg.Now()
	if h := s.cfg.TrustedHeader; h != "" {
		if name := r.Header.Get(h); name != "" {
			u, ok := s.users[strings.ToLower(strings.TrimSpace(name))]
			if !ok {
				return nil
			}
			// The proxy vouches for each request: its session lives as long
			// as the request, its token derived from nothing it sent.
			return &session{user: u, csrf: s.proxyToken(u.Name), expires: now.Add(time.Minute)}
		}
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[c.Value]
	if sess == nil || !now.Before(sess.expires) {
		delete(s.sessions, c.Value)
		return nil
	}
	return sess
}

// proxyToken is the form token of a user signed in by the proxy: one per
// user and process, as a session's.
func (s *Server) proxyToken(name string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.proxied[name]; ok {
		return t
	}
	t := token()
	s.proxied[name] = t
	return t
}

// sameOrigin reports whether a browser says the request came from the
// console's own pages (browsers send Sec-Fetch-Site and Origin on every
// POST; a request without them is not a browser's). Behind a proxy that
// rewrites Host, the Origin is the host the proxy names in
// X-Forwarded-Host, which no page of another site can set.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host && (u.Host == "" || u.Host != r.Header.Get("X-Forwarded-Host")) {
			return false
		}
	}
	return true
}

// dummyHash is a bcrypt hash of no one's password, checked for a name
// nobody has.
var dummyHash = sync.OnceValue(func() string {
	h, _ := bcrypt.GenerateFromPassword([]byte("no one's password"), bcrypt.DefaultCost)
	return string(h)
})

// start signs user in: a new session, its cookie set.
func (s *Server) start(w http.ResponseWriter, u User) {
	t := token()
	now := s.cfg.Now()
	s.mu.Lock()
	for k, sess := range s.sessions { // forget the expired
		if !now.Before(sess.expires) {
			delete(s.sessions, k)
		}
	}
	s.sessions[t] = &session{user: u, csrf: token(), expires: now.Add(s.cfg.Session)}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: t, Path: "/", HttpOnly: true, Secure: s.cfg.SecureCookies,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.cfg.Session.Seconds())})
	s.cfg.Log.Info("console: signed in", zap.String("user", u.Name), zap.String("role", u.Role))
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	t := token()
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: t, Path: "/signin", HttpOnly: true, Secure: s.cfg.SecureCookies, SameSite: http.SameSiteStrictMode})
	s.render(w, r, nil, "signin", map[string]any{"Next": localPath(r.URL.Query().Get("next")), "Token": t, "Failed": r.URL.Query().Get("failed") != ""})
}

func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(signInCookie)
	if err != nil || !sameOrigin(r) || subtle.ConstantTimeCompare([]byte(c.Value), []byte(r.PostFormValue("token"))) != 1 {
		http.Error(w, "refused: this sign-in did not come from the console's page (reload it and try again)", http.StatusForbidden)
		return
	}
	next := localPath(r.PostFormValue("next"))
	// Every attempt waits its turn, before the password is checked: a
	// guess costs the same time whether it is right or not, and guesses
	// sent at once wait in line.
	if err := s.attempts.Wait(r.Context()); err != nil {
		return
	}
	u, ok := s.users[r.PostFormValue("name")]
	hash := u.PasswordHash
	if !ok || hash == "" {
		hash = dummyHash() // as long to refuse a name nobody has as a wrong password
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(r.PostFormValue("password"))) != nil || !ok || u.PasswordHash == "" {
		s.cfg.Log.Warn("console: a sign-in failed", zap.String("name", boundName(r.PostFormValue("name"))))
		http.Redirect(w, r, "/signin?failed=1&next="+url.QueryEscape(next), http.StatusSeeOther)
		return
	}
	s.start(w, u)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (s *Server) signInOnce(w http.ResponseWriter, r *http.Request) {
	t := r.URL.Query().Get("token")
	s.mu.Lock()
	link, ok := s.once[t]
	delete(s.once, t)
	s.mu.Unlock()
	if !ok || !s.cfg.Now().Before(link.expires) {
		http.Redirect(w, r, "/signin?failed=1", http.StatusSeeOther)
		return
	}
	s.start(w, link.user)
	http.Redirect(w, r, "/filings", http.StatusSeeOther)
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request, _ *session) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.mu.Lock()
		delete(s.sessions, c.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// localPath is p if it is a path of the console, else the list: a
// sign-in never sends anyone elsewhere. What it returns is escaped anew
// (RequestURI), so that no tab, line break or backslash a browser would
// read as part of a host survives.
func localPath(p string) string {
	u, err := url.Parse(p)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return "/filings"
	}
	return u.RequestURI()
}

// boundName is a name as typed, for the log: bounded, printable.
func boundName(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
