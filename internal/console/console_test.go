package console_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/qualfile/qualfile/internal/console"
	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/dispatch"
	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/readmodel"
	"github.com/qualfile/qualfile/internal/retry"
	"github.com/qualfile/qualfile/messages"
)

// The raw ID number in examples/vms.add_qualification.json.
const rawID = "110101199003078515"

// clock is the console's time, moved by the test.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// ordersFunc adapts a function to console.Orders.
type ordersFunc func(operator string, a control.Action, o control.Order) (control.Report, error)

func (f ordersFunc) Give(operator string, a control.Action, o control.Order) (control.Report, error) {
	return f(operator, a, o)
}

// deployment is a pipeline whose vendor (the simulator) cuts off every
// call of an id that starts with "amb" (ambiguous) and fails those of
// "down" (transient), each request delivered once; its read model, and a
// console in front of both.
type deployment struct {
	p     *filingtest.Pipeline
	srv   *httptest.Server
	con   *console.Server
	clock *clock
}

func hash(tb testing.TB, pw string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	return string(h)
}

func deploy(t *testing.T) *deployment {
	t.Helper()
	js, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc, MaxDeliver: 1, Upstream: func(real filing.Dispatcher) filing.Dispatcher {
		return filingtest.DispatcherFunc(func(ctx context.Context, req *messages.Request) (dispatch.Outcome, error) {
			switch {
			case strings.HasPrefix(req.ID, "amb"):
				return dispatch.Outcome{}, fmt.Errorf("cut off: %w", retry.ErrAmbiguous)
			case strings.HasPrefix(req.ID, "down"):
				return dispatch.Outcome{}, fmt.Errorf("SystemError: %w", retry.ErrTransient)
			}
			return real.Dispatch(ctx, req)
		})
	}})
	p.Run()
	model, err := readmodel.Open(context.Background(), filepath.Join(t.TempDir(), "console.db"), messages.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = model.Follow(ctx, js) }()
	t.Cleanup(func() { cancel(); <-done; model.Close() })
	clk := &clock{now: time.Now()}
	orders := ordersFunc(func(op string, a control.Action, o control.Order) (control.Report, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return control.Ask(ctx, p.OperatorConn(), p.Subjects, op, a, o)
	})
	con, err := console.New(console.Config{Model: model, JS: js, Ledger: p.Ledger, Subjects: p.Subjects, Orders: orders, Now: clk.Now,
		Session: time.Hour, TrustedHeader: "X-Forwarded-User",
		Users: []console.User{{Name: "alice", Role: console.RoleOperator, PasswordHash: hash(t, "alice-pw")},
			{Name: "bob", Role: console.RoleAuditor, PasswordHash: hash(t, "bob-pw")}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(con.Handler())
	t.Cleanup(srv.Close)
	return &deployment{p: p, srv: srv, con: con, clock: clk}
}

// browser is a client with cookies that follows no redirect by itself.
type browser struct {
	tb   testing.TB
	c    *http.Client
	base string
}

func (d *deployment) browser(tb testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{tb: tb, base: d.srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, header map[string]string) (int, string, string) {
	b.tb.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", b.base)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.tb.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), string(data)
}

var (
	tokenField = regexp.MustCompile(`name="token" value="([^"]+)"`)
	csrfField  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// signIn signs in through the form, and returns the session's form token.
func (b *browser) signIn(name, pw string) string {
	b.tb.Helper()
	_, _, page := b.do("GET", "/signin", nil, nil)
	m := tokenField.FindStringSubmatch(page)
	if m == nil {
		b.tb.Fatalf("no sign-in token on %s", page)
	}
	code, loc, _ := b.do("POST", "/signin", url.Values{"token": {m[1]}, "name": {name}, "password": {pw}, "next": {"/work"}}, nil)
	if code != http.StatusSeeOther || loc != "/work" {
		b.tb.Fatalf("sign-in as %s: %d to %s", name, code, loc)
	}
	_, _, page = b.do("GET", "/filings", nil, nil)
	m = csrfField.FindStringSubmatch(page)
	if m == nil {
		b.tb.Fatalf("signed in as %s, no form token: %s", name, page)
	}
	return m[1]
}

// ambiguous files id ("amb..." cut off, "down..." failing), and waits
// until the work list shows its dead letter.
func (d *deployment) ambiguous(t *testing.T, b *browser, id string) {
	t.Helper()
	d.p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	var last string
	defer func() {
		if t.Failed() {
			t.Log(last)
		}
	}()
	filingtest.WaitFor(t, 15*time.Second, id+" listed as ambiguous, with its dead letter", func() bool {
		_, _, page := b.do("GET", "/work", nil, nil)
		last = page
		return strings.Contains(page, ">"+id+"<") && (strings.HasPrefix(id, "down") || strings.Contains(page, `id="ambiguous"`)) && strings.Count(page, `name="seq"`) >= 1
	})
}

// TestAccess: who may see and do what.
func TestAccess(t *testing.T) {
	d := deploy(t)
	anon := d.browser(t)
	if code, loc, _ := anon.do("GET", "/filings?status=failed", nil, nil); code != http.StatusSeeOther || loc != "/signin?next="+url.QueryEscape("/filings?status=failed") {
		t.Fatalf("signed out: %d to %q", code, loc)
	}
	if code, _, _ := anon.do("POST", "/act", url.Values{"action": {"replay"}, "seq": {"1"}, "reason": {"x"}}, nil); code != http.StatusUnauthorized {
		t.Fatalf("an order signed out: %d", code)
	}
	// A wrong password, a name never configured.
	for _, pw := range [][2]string{{"alice", "wrong"}, {"mallory", "alice-pw"}} {
		_, _, page := anon.do("GET", "/signin", nil, nil)
		tok := tokenField.FindStringSubmatch(page)[1]
		if _, loc, _ := anon.do("POST", "/signin", url.Values{"token": {tok}, "name": {pw[0]}, "password": {pw[1]}}, nil); !strings.HasPrefix(loc, "/signin?failed=1") {
			t.Fatalf("%s/%s signed in: %q", pw[0], pw[1], loc)
		}
	}
	// A sign-in posted from another site (no token of the sign-in page).
	if code, _, _ := anon.do("POST", "/signin", url.Values{"token": {"forged"}, "name": {"alice"}, "password": {"alice-pw"}}, nil); code != http.StatusForbidden {
		t.Fatalf("a forged sign-in: %d", code)
	}

	alice, bob := d.browser(t), d.browser(t)
	aliceCSRF, bobCSRF := alice.signIn("alice", "alice-pw"), bob.signIn("bob", "bob-pw")
	d.ambiguous(t, alice, "amb-1")
	_, _, work := alice.do("GET", "/work", nil, nil)
	seq := regexp.MustCompile(`name="seq" value="(\d+)"`).FindStringSubmatch(work)[1]

	t.Run("an auditor cannot act", func(t *testing.T) {
		code, _, _ := bob.do("POST", "/act", url.Values{"csrf": {bobCSRF}, "action": {"replay"}, "seq": {seq}, "reason": {"x"}, "confirm": {"yes"}}, nil)
		if code != http.StatusForbidden {
			t.Fatalf("an auditor's replay: %d", code)
		}
		if _, _, page := bob.do("GET", "/work", nil, nil); strings.Contains(page, `name="seq"`) {
			t.Fatal("an auditor is offered the operators' actions")
		}
	})
	t.Run("an auditor sees the ID number masked", func(t *testing.T) {
		_, _, op := alice.do("GET", "/filing?id=amb-1", nil, nil)
		_, _, au := bob.do("GET", "/filing?id=amb-1", nil, nil)
		if !strings.Contains(op, rawID) {
			t.Fatal("the operator does not see the dead letter's body")
		}
		if strings.Contains(au, rawID) || !strings.Contains(au, "8515") {
			t.Fatalf("the auditor's page shows the ID number unmasked, or not at all")
		}
	})
	t.Run("a forged cross-site POST is refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			form   url.Values
			header map[string]string
		}{
			"without the form token": {url.Values{"action": {"replay"}, "seq": {seq}, "reason": {"x"}, "confirm": {"yes"}}, nil},
			"another token":          {url.Values{"csrf": {bobCSRF}, "action": {"replay"}, "seq": {seq}, "reason": {"x"}, "confirm": {"yes"}}, nil},
			"from another site":      {url.Values{"csrf": {aliceCSRF}, "action": {"replay"}, "seq": {seq}, "reason": {"x"}, "confirm": {"yes"}}, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
		} {
			if code, _, _ := alice.do("POST", "/act", tc.form, tc.header); code != http.StatusForbidden {
				t.Fatalf("%s: %d", name, code)
			}
		}
		if n := filingtest.CountEvents(d.p.Audit("amb-1"), messages.EventReplayed); n != 0 {
			t.Fatalf("%d replays recorded", n)
		}
	})
	t.Run("the other language, on the same page", func(t *testing.T) {
		_, _, page := bob.do("GET", "/filing?id=amb-1", nil, nil)
		if !strings.Contains(page, `href="/filing?id=amb-1&amp;lang=en"`) || !strings.Contains(page, "时间线") {
			t.Fatalf("the language link of a filing's page: %s", page)
		}
		if _, _, page = bob.do("GET", "/filing?id=amb-1&lang=en", nil, nil); !strings.Contains(page, "Timeline") {
			t.Fatal("no English page")
		}
		bob.do("GET", "/filings?lang=zh", nil, nil)
	})
	t.Run("a proxy's user", func(t *testing.T) {
		proxied := d.browser(t)
		if code, _, _ := proxied.do("GET", "/filings", nil, map[string]string{"X-Forwarded-User": "bob"}); code != http.StatusOK {
			t.Fatalf("bob through the proxy: %d", code)
		}
		if code, _, _ := proxied.do("GET", "/filings", nil, map[string]string{"X-Forwarded-User": "mallory"}); code != http.StatusSeeOther {
			t.Fatalf("a user not configured, through the proxy: %d", code)
		}
	})
	t.Run("an expired session is sent to sign in", func(t *testing.T) {
		d.clock.Add(time.Hour + time.Second)
		if code, loc, _ := alice.do("GET", "/work", nil, nil); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/signin") {
			t.Fatalf("after the session: %d to %q", code, loc)
		}
	})
	t.Run("a one-time link signs in once", func(t *testing.T) {
		link := d.con.OneTimeLink(console.User{Name: "sandbox", Role: console.RoleOperator})
		first, second := d.browser(t), d.browser(t)
		if _, loc, _ := first.do("GET", link, nil, nil); loc != "/filings" {
			t.Fatalf("the link: %q", loc)
		}
		if code, _, _ := first.do("GET", "/work", nil, nil); code != http.StatusOK {
			t.Fatalf("signed in by the link: %d", code)
		}
		if _, loc, _ := second.do("GET", link, nil, nil); !strings.HasPrefix(loc, "/signin?failed") {
			t.Fatalf("the link used again: %q", loc)
		}
	})
}

// TestAnOperatorSettlesAnAmbiguousFiling: found by the merchant's name,
// resolved with a reason behind a confirmation, on the record under the
// operator's name; its proof exported.
func TestAnOperatorSettlesAnAmbiguousFiling(t *testing.T) {
	d := deploy(t)
	alice := d.browser(t)
	csrf := alice.signIn("alice", "alice-pw")
	d.ambiguous(t, alice, "amb-2")
	if _, _, page := alice.do("GET", "/filings?q=m-1001", nil, nil); !strings.Contains(page, ">amb-2<") {
		t.Fatalf("not found by the merchant: %s", page)
	}
	order := url.Values{"csrf": {csrf}, "action": {"resolve"}, "id": {"amb-2"}, "decision": {"filed"}, "record": {"QUA-FOUND-9"}, "reason": {"VMS 控制台可见，10:02 已备案"}}
	code, _, confirm := alice.do("POST", "/act", order, nil)
	if code != http.StatusOK || !strings.Contains(confirm, `name="confirm" value="yes"`) {
		t.Fatalf("no confirmation asked: %d %s", code, confirm)
	}
	if n := filingtest.CountEvents(d.p.Audit("amb-2"), messages.EventResolved); n != 0 {
		t.Fatal("resolved before it was confirmed")
	}
	order.Set("confirm", "yes")
	if code, _, done := alice.do("POST", "/act", order, nil); code != http.StatusOK || !strings.Contains(done, "resolved") {
		t.Fatalf("resolve: %d %s", code, done)
	}
	evs := d.p.Audit("amb-2")
	var resolved *messages.AuditEvent
	for i := range evs {
		if evs[i].Event == messages.EventResolved {
			resolved = &evs[i]
		}
	}
	if resolved == nil || resolved.Operator != "alice" || resolved.Reason != order.Get("reason") {
		t.Fatalf("the trail: %+v", evs)
	}
	filingtest.WaitFor(t, 10*time.Second, "the filing shown resolved, with who and why", func() bool {
		_, _, page := alice.do("GET", "/filing?id=amb-2", nil, nil)
		return strings.Contains(page, "QUA-FOUND-9") && strings.Contains(page, "<b>alice</b>: "+order.Get("reason"))
	})
	code, _, proof := alice.do("GET", "/proof?id=amb-2", nil, nil)
	if code != http.StatusOK || !strings.Contains(proof, `"format": "qualfile-proof/1"`) || !strings.Contains(proof, `"exported_by": "alice"`) || strings.Contains(proof, rawID) {
		t.Fatalf("the proof: %d %s", code, proof)
	}
}

// TestCSVExport: the list as the filters choose it, readable by a
// spreadsheet (a byte-order mark), a value that starts like a formula
// quoted as text.
func TestCSVExport(t *testing.T) {
	d := deploy(t)
	var req map[string]any
	_ = json.Unmarshal(filingtest.Example(t, messages.APIVMSAddQualification, "csv-1"), &req)
	req["metadata"] = map[string]string{"merchant": "=HYPERLINK(\"http://evil.example\",\"杭州\")"}
	data, _ := json.Marshal(req)
	d.p.Publish(messages.APIVMSAddQualification, "csv-1", data)
	d.p.Publish(messages.APIVMSAddQualification, "csv-2", filingtest.Example(t, messages.APIVMSAddQualification, "csv-2"))
	bob := d.browser(t)
	bob.signIn("bob", "bob-pw")
	var body string
	filingtest.WaitFor(t, 10*time.Second, "both filings exported", func() bool {
		_, _, body = bob.do("GET", "/filings.csv?status=succeeded", nil, nil)
		return strings.Count(body, "\n") == 3
	})
	rows, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(body, "\xEF\xBB\xBF"))).ReadAll()
	if !strings.HasPrefix(body, "\xEF\xBB\xBF") || err != nil || rows[0][2] != "request_id" {
		t.Fatalf("the CSV: %v %q", err, body)
	}
	for _, row := range rows[1:] {
		if row[2] == "csv-1" && row[5] != "'"+req["metadata"].(map[string]string)["merchant"] {
			t.Fatalf("a formula exported as is: %q", row[5])
		}
	}
	if _, _, none := bob.do("GET", "/filings.csv?status=failed", nil, nil); strings.Count(none, "\n") != 1 {
		t.Fatalf("the failed filings' CSV: %q", none)
	}
}
