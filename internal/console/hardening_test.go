package console_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/console"
)

// signInAttempt posts one sign-in with the form's token and cookie and
// returns where it sends the browser, and how long it took.
func signInAttempt(t *testing.T, d *deployment, b *browser, tok, name, pw, next string) (string, time.Duration) {
	t.Helper()
	form := url.Values{"token": {tok}, "name": {name}, "password": {pw}, "next": {next}}
	req, _ := http.NewRequest("POST", d.srv.URL+"/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	su, _ := url.Parse(d.srv.URL + "/signin")
	for _, c := range b.c.Jar.Cookies(su) {
		req.AddCookie(c)
	}
	start := time.Now()
	resp, err := http.DefaultTransport.RoundTrip(req) // the Location as sent, as a browser reads it
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Header.Get("Location"), time.Since(start)
}

func signInToken(t *testing.T, b *browser) string {
	t.Helper()
	_, _, page := b.do("GET", "/signin", nil, nil)
	return tokenField.FindStringSubmatch(page)[1]
}

// TestSignInSendsNowhereElse: after signing in, the browser goes to a
// page of the console, whatever next says: a browser drops tabs and line
// breaks from a URL and reads a backslash as a slash.
func TestSignInSendsNowhereElse(t *testing.T) {
	d := deploy(t)
	for _, next := range []string{"/\t/evil.example/phish", "/\n/evil.example", "/\t\\evil.example", "/\\evil.example", "//evil.example",
		"https://evil.example/", "/%09/evil.example"} {
		b := d.browser(t)
		loc, _ := signInAttempt(t, d, b, signInToken(t, b), "alice", "alice-pw", next)
		if u, err := url.Parse(strings.NewReplacer("\t", "", "\n", "", "\r", "", "\\", "/").Replace(loc)); err != nil || u.Host != "" || !strings.HasPrefix(loc, "/") {
			t.Errorf("next=%q: Location %q", next, loc)
		}
	}
	b := d.browser(t)
	if loc, _ := signInAttempt(t, d, b, signInToken(t, b), "alice", "alice-pw", "/work?x=1"); loc != "/work?x=1" {
		t.Errorf("a page of the console: Location %q", loc)
	}
}

// TestGuessesWaitTheirTurn: every sign-in takes its turn before its
// password is checked, so a right password among guesses sent at once is
// answered no sooner than the wrong ones.
func TestGuessesWaitTheirTurn(t *testing.T) {
	d := deploy(t)
	b := d.browser(t)
	tok := signInToken(t, b)
	var wg sync.WaitGroup
	for range 12 { // the burst, and two more
		wg.Go(func() { signInAttempt(t, d, b, tok, "alice", "wrong", "") })
	}
	time.Sleep(100 * time.Millisecond)
	loc, took := signInAttempt(t, d, b, tok, "alice", "alice-pw", "")
	wg.Wait()
	if loc != "/filings" || took < 2*time.Second {
		t.Errorf("the right password after 12 guesses: to %q in %s; want it to wait its turn", loc, took)
	}
}

// TestAnUnknownNameCostsAPasswordCheck: a name nobody has is refused as
// slowly as a wrong password, so the time of a failed sign-in does not
// tell which names exist.
func TestAnUnknownNameCostsAPasswordCheck(t *testing.T) {
	d := deploy(t)
	b := d.browser(t)
	tok := signInToken(t, b)
	fastest := func(name string) time.Duration {
		best := time.Hour
		for range 4 { // within the burst
			loc, took := signInAttempt(t, d, b, tok, name, "wrong", "")
			if !strings.HasPrefix(loc, "/signin?failed") {
				t.Fatalf("%s: %q", name, loc)
			}
			best = min(best, took)
		}
		return best
	}
	known, unknown := fastest("alice"), fastest("nobody")
	if unknown < known/2 {
		t.Errorf("a configured name is refused in %s, an unknown one in %s", known, unknown)
	}
}

// TestServeWaitsForItsHandlers: Serve returns once every request being
// answered has ended, its context cancelled after the grace: none keeps
// using what the consumer closes next.
func TestServeWaitsForItsHandlers(t *testing.T) {
	var running atomic.Int32
	started := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running.Add(1)
		defer running.Add(-1)
		close(started)
		select { // a CSV export to a slow reader, a slow trail read
		case <-r.Context().Done():
			time.Sleep(300 * time.Millisecond) // a query ending
		case <-time.After(30 * time.Second):
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- console.Serve(ctx, ln, h) }()
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-started
	cancel()
	<-served
	if n := running.Load(); n != 0 {
		t.Errorf("Serve returned with %d handler(s) still running", n)
	}
}
