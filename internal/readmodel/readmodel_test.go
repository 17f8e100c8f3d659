package readmodel_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/readmodel"
	"github.com/qualfile/qualfile/messages"
)

// open opens a model in the test's folder.
func open(tb testing.TB, name string) *readmodel.Model {
	tb.Helper()
	m, err := readmodel.Open(context.Background(), filepath.Join(tb.TempDir(), name), messages.Subjects{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return m
}

// follow keeps m up to date with js's streams until stop or the test's end.
func follow(tb testing.TB, m *readmodel.Model, js jetstream.JetStream) (stop func()) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Follow(ctx, js) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Follow: %v", err)
		}
	}
	tb.Cleanup(stop)
	return stop
}

// streams creates the deployment's streams on a server of the test's own.
func streams(tb testing.TB) (jetstream.JetStream, *nats.Conn) {
	tb.Helper()
	js, nc, _ := natstest.JetStream(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{}); err != nil {
		tb.Fatal(err)
	}
	return js, nc
}

var s = messages.Subjects{}

func publish(tb testing.TB, js jetstream.JetStream, subject string, v any, msgID string) {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	m := nats.NewMsg(subject)
	m.Data = data
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := js.PublishMsg(context.Background(), m, opts...); err != nil {
		tb.Fatal(err)
	}
}

func publishResult(tb testing.TB, js jetstream.JetStream, r messages.Result) {
	tb.Helper()
	publish(tb, js, s.For(r.Tenant).ResultFor(r.API, r.RequestID), r, "")
}

func publishEvent(tb testing.TB, js jetstream.JetStream, ev messages.AuditEvent) {
	tb.Helper()
	publish(tb, js, s.For(ev.Tenant).Audit(ev.API, ev.Event, ev.RequestID), ev, "")
}

// eventually waits until what holds of m.
func eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	filingtest.WaitFor(tb, 10*time.Second, what, cond)
}

func counts(tb testing.TB, m *readmodel.Model, f readmodel.Filter) map[string]int {
	tb.Helper()
	c, err := m.Counts(context.Background(), f)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func total(c map[string]int) int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func ids(tb testing.TB, m *readmodel.Model, f readmodel.Filter) []string {
	tb.Helper()
	var out []string
	for {
		p, err := m.Filings(context.Background(), f)
		if err != nil {
			tb.Fatal(err)
		}
		for _, fl := range p.Filings {
			out = append(out, fl.Tenant+"/"+fl.RequestID)
		}
		if p.Next == "" {
			return out
		}
		f.After = p.Next
	}
}

// TestProjectionOfThePipeline runs the real pipeline against the
// simulator and finds its filings in the model: by status, by the
// merchant's name, by the vendor's record, with dead letters and
// in-progress filings.
func TestProjectionOfThePipeline(t *testing.T) {
	js, nc, _ := natstest.JetStream(t)
	p := filingtest.New(t, filingtest.Options{NC: nc, Tenants: map[string]string{"acme-account": "acme"}})
	p.Run()
	m := open(t, "model.db")
	follow(t, m, js)

	withMerchant := func(api messages.API, id, merchant string) []byte {
		var r map[string]any
		if err := json.Unmarshal(filingtest.Example(t, api, id), &r); err != nil {
			t.Fatal(err)
		}
		r["metadata"] = map[string]string{"merchant": merchant}
		b, _ := json.Marshal(r)
		return b
	}
	p.Publish(messages.APIVMSAddQualification, "ok-1", withMerchant(messages.APIVMSAddQualification, "ok-1", "杭州某某科技有限公司"))
	p.Publish(messages.APIDouyinAddRole, "ok-2", withMerchant(messages.APIDouyinAddRole, "ok-2", "Example Trading Co"))
	p.Publish(messages.APISMSApplySignatureIdent, "bad-1", []byte(`{"id":"bad-1","api":"sms.apply_signature_ident","payload":{}}`))
	p.Publish(messages.APIVMSAddQualification, "junk", []byte(`not json`))
	p.WaitResults(3, 20*time.Second)

	eventually(t, "three filings with their outcomes, one dead letter", func() bool {
		c := counts(t, m, readmodel.Filter{})
		d, _ := m.Dead(context.Background(), "", "", 10)
		return c["succeeded"] == 2 && c["rejected"] == 1 && len(d) == 1
	})
	ctx := context.Background()
	got, err := m.Filings(ctx, readmodel.Filter{Query: "杭州某某"})
	if err != nil || len(got.Filings) != 1 || got.Filings[0].RequestID != "ok-1" || got.Filings[0].Merchant != "杭州某某科技有限公司" {
		t.Fatalf("by the merchant's name: %+v, %v", got, err)
	}
	record := got.Filings[0].Record
	if !strings.HasPrefix(record, "QUA") {
		t.Fatalf("the VMS record: %q", record)
	}
	byRecord, err := m.Filings(ctx, readmodel.Filter{Query: strings.ToLower(record)})
	if err != nil || len(byRecord.Filings) != 1 || byRecord.Filings[0].RequestID != "ok-1" {
		t.Fatalf("by the record %s: %+v, %v", record, byRecord, err)
	}
	rejected, err := m.Filings(ctx, readmodel.Filter{Status: "rejected"})
	if err != nil || len(rejected.Filings) != 1 || rejected.Filings[0].RequestID != "bad-1" || rejected.Filings[0].Code != "InvalidRequest" {
		t.Fatalf("rejected: %+v, %v", rejected, err)
	}
	dead, _ := m.Dead(ctx, "", "", 10)
	if dead[0].Class != messages.ClassInvalid || dead[0].API != "vms.add_qualification" {
		t.Fatalf("dead letter: %+v", dead[0])
	}
	// An operator removes the letter: the model follows the stream.
	if _, err := p.Order(control.ActionRemove, control.Order{Seq: dead[0].Seq}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the removed letter gone", func() bool {
		d, _ := m.Dead(ctx, "", "", 10)
		return len(d) == 0
	})
	hours, err := m.Overview(ctx, time.Now().Add(-time.Hour))
	if err != nil || len(hours) == 0 {
		t.Fatalf("overview: %v, %v", hours, err)
	}
	h := hours[len(hours)-1]
	if h.Filings["vms.add_qualification"]["succeeded"] != 1 || h.Events["vms.add_qualification"]["attempt"] != 1 || h.MeanMS["vms.add_qualification"] <= 0 {
		t.Fatalf("overview's last hour: %+v", h)
	}
}

// TestFilters: every filter, alone and together, chooses what it says.
func TestFilters(t *testing.T) {
	js, _ := streams(t)
	m := open(t, "model.db")
	follow(t, m, js)
	base := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	type row struct {
		tenant, id, account, merchant string
		api                           messages.API
		status                        messages.Status
		class                         string
		at                            int // hours after base
	}
	rows := []row{
		{"", "a-1", "default", "Alpha", messages.APIVMSAddQualification, messages.StatusSucceeded, "", 0},
		{"", "a-2", "default", "Alpha", messages.APIVMSAddQualification, messages.StatusFailed, messages.ClassPermanent, 1},
		{"", "a-3", "other", "Beta", messages.APISMSApplySignatureIdent, messages.StatusFailed, messages.ClassAmbiguous, 2},
		{"acme", "a-1", "acme-main", "Alpha", messages.APIDouyinAddRole, messages.StatusSucceeded, "", 3},
		{"acme", "b-1", "acme-main", "Gamma", messages.APIVMSAddQualification, messages.StatusRejected, messages.ClassInvalid, 4},
	}
	for _, r := range rows {
		res := messages.Result{RequestID: r.id, API: r.api, Tenant: r.tenant, Account: r.account, Status: r.status, Attempts: 1,
			ReceivedAt: base.Add(time.Duration(r.at) * time.Hour), CompletedAt: base.Add(time.Duration(r.at)*time.Hour + time.Second),
			Metadata: map[string]string{"merchant": r.merchant}}
		if r.class != "" {
			res.Error = &messages.ResultError{Code: "X", Class: r.class, Message: "m"}
		}
		publishResult(t, js, res)
	}
	// A filing received, without an outcome yet.
	publishEvent(t, js, messages.AuditEvent{ID: "e-1", RequestID: "c-1", API: messages.APIVMSAddQualification, Account: "default", Event: messages.EventReceived,
		Time: base.Add(5 * time.Hour)})
	eventually(t, "six filings", func() bool { return total(counts(t, m, readmodel.Filter{})) == 6 })

	for _, tc := range []struct {
		name string
		f    readmodel.Filter
		want []string // newest first
	}{
		{"all", readmodel.Filter{}, []string{"/c-1", "acme/b-1", "acme/a-1", "/a-3", "/a-2", "/a-1"}},
		{"status", readmodel.Filter{Status: "failed"}, []string{"/a-2"}},
		{"ambiguous", readmodel.Filter{Status: "ambiguous"}, []string{"/a-3"}},
		{"in progress", readmodel.Filter{Status: "in_progress"}, []string{"/c-1"}},
		{"api", readmodel.Filter{API: messages.APIVMSAddQualification}, []string{"/c-1", "acme/b-1", "/a-2", "/a-1"}},
		{"tenant", readmodel.Filter{Tenant: "acme"}, []string{"acme/b-1", "acme/a-1"}},
		{"default tenant", readmodel.Filter{Tenant: readmodel.DefaultTenant}, []string{"/c-1", "/a-3", "/a-2", "/a-1"}},
		{"account", readmodel.Filter{Account: "other"}, []string{"/a-3"}},
		{"from", readmodel.Filter{From: base.Add(3 * time.Hour)}, []string{"/c-1", "acme/b-1", "acme/a-1"}},
		{"to", readmodel.Filter{To: base.Add(time.Hour)}, []string{"/a-1"}},
		{"merchant", readmodel.Filter{Query: "alp"}, []string{"acme/a-1", "/a-2", "/a-1"}},
		{"id", readmodel.Filter{Query: "b-1"}, []string{"acme/b-1"}},
		{"together", readmodel.Filter{Query: "alpha", API: messages.APIVMSAddQualification, Status: "succeeded", Tenant: readmodel.DefaultTenant}, []string{"/a-1"}},
		{"none", readmodel.Filter{Query: "zzz"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(t, m, tc.f); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			c := counts(t, m, tc.f)
			if tc.f.Status == "" && total(c) != len(tc.want) {
				t.Fatalf("counts %v, want %d in all", c, len(tc.want))
			}
		})
	}
}

func TestFilterValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		f       readmodel.Filter
		wantErr error
		field   string
	}{
		{"zero", readmodel.Filter{}, nil, ""},
		{"status", readmodel.Filter{Status: "done"}, readmodel.ErrInvalidFilter, "status"},
		{"api", readmodel.Filter{API: "vms.x"}, readmodel.ErrInvalidFilter, "api"},
		{"tenant", readmodel.Filter{Tenant: "Acme!"}, readmodel.ErrInvalidFilter, "tenant"},
		{"range", readmodel.Filter{From: time.Unix(10, 0), To: time.Unix(5, 0)}, readmodel.ErrInvalidFilter, "to"},
		{"short query", readmodel.Filter{Query: "ab"}, readmodel.ErrInvalidFilter, "q"},
		{"cursor", readmodel.Filter{After: "x"}, readmodel.ErrInvalidFilter, "after"},
		{"limit", readmodel.Filter{Limit: readmodel.MaxLimit + 1}, readmodel.ErrInvalidFilter, "limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			var ve *messages.ValidationError
			if tc.field != "" && (!errors.As(err, &ve) || ve.Fields[0].Field != tc.field) {
				t.Fatalf("err %v does not name %s", err, tc.field)
			}
		})
	}
}

// TestOutcomeInForce: the filing's outcome is the result no other
// supersedes, whatever order they are read in; an IdReused rejection is
// the reusing message's, not the filing's.
func TestOutcomeInForce(t *testing.T) {
	js, _ := streams(t)
	m := open(t, "model.db")
	follow(t, m, js)
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	later := messages.Result{RequestID: "r-1", API: messages.APIVMSAddQualification, Account: "default", Status: messages.StatusSucceeded,
		ReceivedAt: at, CompletedAt: at.Add(2 * time.Minute), Supersedes: at.Add(time.Minute),
		Resolution: &messages.Resolution{Decision: messages.DecisionFiled, Record: "QUA-FOUND", Operator: "alice", Reason: "seen"}}
	earlier := messages.Result{RequestID: "r-1", API: messages.APIVMSAddQualification, Account: "default", Status: messages.StatusFailed,
		ReceivedAt: at, CompletedAt: at.Add(time.Minute), Error: &messages.ResultError{Code: "AmbiguousOutcome", Class: messages.ClassAmbiguous}}
	reuse := messages.Result{RequestID: "r-1", API: messages.APIVMSAddQualification, Account: "default", Status: messages.StatusRejected,
		ReceivedAt: at, CompletedAt: at.Add(time.Hour), Error: &messages.ResultError{Code: "IdReused", Class: messages.ClassInvalid}}
	publishResult(t, js, later)
	publishResult(t, js, earlier)
	publishResult(t, js, reuse)
	eventually(t, "r-1 filed as QUA-FOUND", func() bool {
		f, err := m.Filing(context.Background(), "", "r-1")
		return err == nil && f.Status == "succeeded" && f.Record == "QUA-FOUND" && f.ResultSeq == 1
	})
	if _, err := m.Filing(context.Background(), "", "nope"); !errors.Is(err, readmodel.ErrNotFound) {
		t.Fatalf("a filing never seen: %v", err)
	}
}

// TestCopiesCountedOnce: an audit event published again (after the
// stream's duplicate window), a result published again and a stream read
// twice change no count.
func TestCopiesCountedOnce(t *testing.T) {
	js, _ := streams(t)
	m := open(t, "model.db")
	stop := follow(t, m, js)
	at := time.Now().UTC()
	attempt := messages.AuditEvent{ID: "owner/1/x/1/attempt/2/0", RequestID: "r-1", API: messages.APIVMSAddQualification, Event: messages.EventAttempt,
		Attempt: 2, Class: "transient", DurationMS: 40, Time: at}
	res := messages.Result{RequestID: "r-1", API: messages.APIVMSAddQualification, Account: "default", Status: messages.StatusSucceeded, ReceivedAt: at, CompletedAt: at}
	publishEvent(t, js, attempt)
	publishResult(t, js, res)
	publishEvent(t, js, attempt) // a copy: the same identity
	publishResult(t, js, res)
	eventually(t, "all four applied", func() bool { return applied(t, m) == 4 })
	stop()
	// Followed again from its position: still counted once.
	follow(t, m, js)
	check := func() {
		t.Helper()
		hours, err := m.Overview(context.Background(), at.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		api := string(messages.APIVMSAddQualification)
		if len(hours) != 1 || hours[0].Events[api]["attempt"] != 1 || hours[0].Events[api][readmodel.EventRetry] != 1 ||
			hours[0].Filings[api]["succeeded"] != 1 || hours[0].MeanMS[api] != 40 {
			t.Fatalf("hours: %+v", hours)
		}
	}
	publishEvent(t, js, messages.AuditEvent{ID: "other", RequestID: "r-2", API: messages.APIVMSAddQualification, Event: messages.EventReceived, Time: at})
	eventually(t, "the fifth applied", func() bool { return applied(t, m) == 5 })
	check()
}

// applied is how many messages m has applied, of every stream.
func applied(tb testing.TB, m *readmodel.Model) int {
	tb.Helper()
	n, err := m.Applied(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	total := 0
	for _, v := range n {
		total += int(v)
	}
	return total
}

// TestRebuildEqualsIncremental: a model built while the streams grew, in
// several sittings, equals one built from zero at the end.
func TestRebuildEqualsIncremental(t *testing.T) {
	js, _ := streams(t)
	inc := open(t, "incremental.db")
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	feed := func(from, to int) {
		for i := from; i < to; i++ {
			id := fmt.Sprintf("r-%d", i)
			t0 := at.Add(time.Duration(i) * time.Minute)
			publishEvent(t, js, messages.AuditEvent{ID: id + "/received", RequestID: id, API: messages.APIVMSAddQualification, Event: messages.EventReceived, Time: t0})
			publishEvent(t, js, messages.AuditEvent{ID: id + "/attempt", RequestID: id, API: messages.APIVMSAddQualification, Event: messages.EventAttempt, Attempt: 1 + i%3,
				DurationMS: float64(i), Time: t0.Add(time.Second)})
			if i%4 != 3 {
				publishResult(t, js, messages.Result{RequestID: id, API: messages.APIVMSAddQualification, Account: "default", Status: messages.StatusSucceeded,
					ReceivedAt: t0, CompletedAt: t0.Add(2 * time.Second), Result: json.RawMessage(fmt.Sprintf(`{"QualificationNo":"QUA%d"}`, i))})
			}
			if i%5 == 0 {
				publishEvent(t, js, messages.AuditEvent{ID: id + "/attempt", RequestID: id, API: messages.APIVMSAddQualification, Event: messages.EventAttempt}) // a copy
			}
		}
	}
	feed(0, 20)
	stop := follow(t, inc, js)
	feed(20, 40)
	eventually(t, "caught up", func() bool { return applied(t, inc) == streamTotal(t, js) })
	stop()
	feed(40, 60)
	stop = follow(t, inc, js)
	eventually(t, "caught up again", func() bool { return applied(t, inc) == streamTotal(t, js) })

	fresh := open(t, "fresh.db")
	follow(t, fresh, js)
	eventually(t, "built from zero", func() bool { return applied(t, fresh) == streamTotal(t, js) })
	if a, b := dump(t, inc), dump(t, fresh); a != b {
		t.Fatalf("incremental and rebuilt differ:\n%s\n---\n%s", a, b)
	}
	// Rebuild on the incremental one gives the same again.
	stop()
	if err := inc.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	follow(t, inc, js)
	eventually(t, "rebuilt", func() bool { return applied(t, inc) == streamTotal(t, js) })
	if a, b := dump(t, inc), dump(t, fresh); a != b {
		t.Fatalf("rebuilt in place and from zero differ:\n%s\n---\n%s", a, b)
	}
}

func streamTotal(tb testing.TB, js jetstream.JetStream) int {
	tb.Helper()
	n := 0
	for _, name := range []string{"FILING_RESULTS", "FILING_AUDIT", "FILING_DEAD"} {
		st, err := js.Stream(context.Background(), name)
		if err != nil {
			tb.Fatal(err)
		}
		info, err := st.Info(context.Background())
		if err != nil {
			tb.Fatal(err)
		}
		n += int(info.State.LastSeq)
	}
	return n
}

// dump is everything a model shows: a page of every filing, the counts,
// the overview.
func dump(tb testing.TB, m *readmodel.Model) string {
	tb.Helper()
	ctx := context.Background()
	p, err := m.Filings(ctx, readmodel.Filter{Limit: readmodel.MaxLimit})
	if err != nil {
		tb.Fatal(err)
	}
	hours, err := m.Overview(ctx, time.Time{})
	if err != nil {
		tb.Fatal(err)
	}
	b, _ := json.MarshalIndent(map[string]any{"filings": p.Filings, "counts": counts(tb, m, readmodel.Filter{}), "hours": hours}, "", " ")
	return string(b)
}

// TestPagingIsStable: paging through while filings arrive shows each of
// those there at the start exactly once, in order.
func TestPagingIsStable(t *testing.T) {
	js, _ := streams(t)
	m := open(t, "model.db")
	follow(t, m, js)
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	add := func(i int, received time.Time) {
		publishResult(t, js, messages.Result{RequestID: fmt.Sprintf("r-%03d", i), API: messages.APIVMSAddQualification, Account: "default",
			Status: messages.StatusSucceeded, ReceivedAt: received, CompletedAt: received})
	}
	for i := range 95 {
		add(i, at.Add(time.Duration(i/3)*time.Second)) // three received in the same millisecond
	}
	eventually(t, "95 filings", func() bool { return total(counts(t, m, readmodel.Filter{})) == 95 })
	var seen []string
	f := readmodel.Filter{Limit: 10}
	for page := 0; ; page++ {
		p, err := m.Filings(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, fl := range p.Filings {
			seen = append(seen, fl.RequestID)
		}
		add(100+page, at.Add(time.Hour)) // newer ones arrive while paging
		if p.Next == "" {
			break
		}
		f.After = p.Next
	}
	if len(seen) != 95 {
		t.Fatalf("saw %d filings, want 95", len(seen))
	}
	for i, id := range seen {
		want := 94 - i
		// Newest first; within one millisecond, the later stored first.
		if id != fmt.Sprintf("r-%03d", want) {
			t.Fatalf("position %d: %s, want r-%03d (%v)", i, id, want, seen)
		}
	}
}

// TestStreamCreatedAnew: a model of streams since deleted and created
// again forgets what they held.
func TestStreamCreatedAnew(t *testing.T) {
	js, _ := streams(t)
	m := open(t, "model.db")
	stop := follow(t, m, js)
	at := time.Now().UTC()
	publishResult(t, js, messages.Result{RequestID: "old", API: messages.APIVMSAddQualification, Account: "default", Status: messages.StatusSucceeded, ReceivedAt: at, CompletedAt: at})
	eventually(t, "old applied", func() bool { return applied(t, m) == 1 })
	stop()
	if err := js.DeleteStream(context.Background(), "FILING_RESULTS"); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.EnsureStreams(context.Background(), js, queue.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	publishResult(t, js, messages.Result{RequestID: "new", API: messages.APIVMSAddQualification, Account: "default", Status: messages.StatusSucceeded, ReceivedAt: at, CompletedAt: at})
	follow(t, m, js)
	eventually(t, "only new", func() bool {
		return reflect.DeepEqual(ids(t, m, readmodel.Filter{}), []string{"/new"})
	})
}

// TestOtherVersionStartsAnew: a model file of another version of the
// tables is a cache to throw away, not an error.
func TestOtherVersionStartsAnew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "model.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("CREATE TABLE filings (x); PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	m, err := readmodel.Open(context.Background(), path, messages.Subjects{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if c := counts(t, m, readmodel.Filter{}); len(c) != 0 {
		t.Fatalf("counts %v", c)
	}
}
