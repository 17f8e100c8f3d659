package console

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/readmodel"
	"github.com/qualfile/qualfile/internal/tracing"
	"github.com/qualfile/qualfile/messages"
)

// MaxExport bounds the rows of one CSV export.
const MaxExport = 100_000

// render writes page with data, in the viewer's language.
func (s *Server) render(w http.ResponseWriter, r *http.Request, sess *session, page string, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	lang := language(w, r)
	other := url.Values{}
	if r.Method == http.MethodGet {
		other = cloneValues(r.URL.Query()) // the same page, in the other language
	}
	other.Set("lang", map[string]string{"zh": "en", "en": "zh"}[lang])
	data["Lang"], data["Nav"], data["LangURL"] = lang, page, r.URL.Path+"?"+other.Encode()
	if sess != nil {
		data["User"], data["CSRF"] = sess.user, sess.csrf
	}
	var buf bytes.Buffer
	t, err := s.pages[page].Clone() // its own translator: pages are drawn concurrently
	if err == nil {
		err = t.Funcs(map[string]any{"t": translator(lang)}).Execute(&buf, data)
	}
	if err != nil {
		s.cfg.Log.Error("console: rendering a page", zap.String("page", page), zap.Error(err))
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = buf.WriteTo(w)
}

// fail answers with a page that says what went wrong.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, sess *session, code int, err error) {
	w.WriteHeader(code)
	s.render(w, r, sess, "error", map[string]any{"Error": err.Error()})
}

// filter reads the list's filter from a query, times in the viewer's
// zone (tz, which the page's script fills in).
func filter(q url.Values) (readmodel.Filter, error) {
	f := readmodel.Filter{Status: q.Get("status"), API: messages.API(q.Get("api")), Tenant: q.Get("tenant"), Account: q.Get("account"),
		Query: strings.TrimSpace(q.Get("q")), After: q.Get("after")}
	loc := time.UTC
	if tz := q.Get("tz"); tz != "" {
		if l, err := time.LoadLocation(tz); err == nil {
			loc = l
		}
	}
	var errs []error
	day := func(name string, dst *time.Time, plus int) {
		if v := q.Get(name); v != "" {
			t, err := time.ParseInLocation("2006-01-02", v, loc)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: a date such as 2026-12-01", name))
				return
			}
			*dst = t.AddDate(0, 0, plus)
		}
	}
	day("from", &f.From, 0)
	day("to", &f.To, 1) // to the end of that day
	if err := errors.Join(errs...); err != nil {
		return f, err
	}
	return f, f.Validate()
}

func (s *Server) filings(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	f, err := filter(q)
	if err != nil {
		s.render(w, r, sess, "filings", map[string]any{"Error": err.Error(), "Q": q, "APIs": messages.APIs(), "Statuses": readmodel.Statuses})
		return
	}
	ctx := r.Context()
	page, err := s.cfg.Model.Filings(ctx, f)
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, err)
		return
	}
	counts, err := s.cfg.Model.Counts(ctx, f)
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, err)
		return
	}
	all := 0
	for _, n := range counts {
		all += n
	}
	next := ""
	if page.Next != "" {
		nq := cloneValues(q)
		nq.Set("after", page.Next)
		next = "/filings?" + nq.Encode()
	}
	csvq := cloneValues(q)
	csvq.Del("after")
	s.render(w, r, sess, "filings", map[string]any{"Q": q, "Page": page, "Counts": counts, "All": all, "Next": next,
		"CSV": "/filings.csv?" + csvq.Encode(), "APIs": messages.APIs(), "Statuses": readmodel.Statuses,
		"StatusLink": func(status string) string {
			sq := cloneValues(q)
			sq.Del("after")
			sq.Set("status", status)
			return "/filings?" + sq.Encode()
		}})
}

func cloneValues(q url.Values) url.Values {
	out := url.Values{}
	for k, v := range q {
		out[k] = slices.Clone(v)
	}
	return out
}

// filingsCSV exports the list the filter chooses, up to MaxExport rows. A
// value that a spreadsheet would take for a formula is quoted as text.
func (s *Server) filingsCSV(w http.ResponseWriter, r *http.Request, sess *session) {
	f, err := filter(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.After, f.Limit = "", readmodel.MaxLimit
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="filings-%s.csv"`, s.cfg.Now().UTC().Format("20060102-150405")))
	_, _ = w.Write([]byte("\xEF\xBB\xBF")) // a byte-order mark: spreadsheets then read Chinese as UTF-8
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"received_at", "tenant", "request_id", "api", "account", "merchant", "status", "code", "record", "attempts", "completed_at"})
	rows := 0
	for rows < MaxExport {
		page, err := s.cfg.Model.Filings(r.Context(), f)
		if err != nil {
			s.cfg.Log.Warn("console: a CSV export stopped", zap.Error(err))
			// Too late for an error status: the last line says it.
			_ = cw.Write([]string{"# the export stopped here, incomplete: " + err.Error()})
			cw.Flush()
			return
		}
		for _, fl := range page.Filings {
			completed := ""
			if !fl.CompletedAt.IsZero() {
				completed = fl.CompletedAt.Format(time.RFC3339Nano)
			}
			_ = cw.Write(cells(fl.ReceivedAt.Format(time.RFC3339Nano), fl.Tenant, fl.RequestID, fl.API, fl.Account, fl.Merchant, fl.Status, fl.Code,
				fl.Record, strconv.Itoa(fl.Attempts), completed))
			rows++
		}
		if page.Next == "" {
			break
		}
		f.After = page.Next
	}
	cw.Flush()
	s.cfg.Log.Info("console: filings exported", zap.String("user", sess.user.Name), zap.Int("rows", rows))
}

// cells quotes each value that starts like a formula.
func cells(vs ...string) []string {
	for i, v := range vs {
		if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
			vs[i] = "'" + v
		}
	}
	return vs
}

// filingParams reads which filing a request names.
func filingParams(r *http.Request) (tenant, id string, err error) {
	tenant, id = r.FormValue("tenant"), r.FormValue("id")
	if tenant != "" && !messages.ValidTenant(tenant) {
		return "", "", errors.New("not a tenant's name")
	}
	if id == "" || len(id) > 200 {
		return "", "", errors.New("name a filing: id")
	}
	return tenant, id, nil
}

// timelineRow is one audit event on a filing's page.
type timelineRow struct {
	operator.TrailEvent
	Payload string
}

// aFiling serves a page of the filing a request names, read within 30 s.
func (s *Server) aFiling(h func(ctx context.Context, w http.ResponseWriter, r *http.Request, sess *session, tenant, id string)) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, sess *session) {
		tenant, id, err := filingParams(r)
		if err != nil {
			s.fail(w, r, sess, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		h(ctx, w, r, sess, tenant, id)
	}
}

func (s *Server) filing(ctx context.Context, w http.ResponseWriter, r *http.Request, sess *session, tenant, id string) {
	subjects := s.cfg.Subjects.For(tenant)
	trail, err := operator.ReadTrail(ctx, s.cfg.JS, s.cfg.Ledger, s.cfg.Model, subjects, id)
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	summary, err := s.cfg.Model.Filing(ctx, tenant, id)
	if err != nil && !errors.Is(err, readmodel.ErrNotFound) {
		s.fail(w, r, sess, http.StatusInternalServerError, err)
		return
	}
	if errors.Is(err, readmodel.ErrNotFound) && len(trail.Events) == 0 && len(trail.Results) == 0 && trail.Entry == nil {
		s.fail(w, r, sess, http.StatusNotFound, fmt.Errorf("no filing %q", id))
		return
	}
	var rows []timelineRow
	for _, ev := range trail.Events {
		row := timelineRow{TrailEvent: ev}
		if len(ev.Payload) > 0 {
			row.Payload = indent(ev.Payload) // redacted when published
		}
		rows = append(rows, row)
	}
	type deadRow struct {
		operator.DeadLetter
		Body string
	}
	var dead []deadRow
	for _, d := range trail.Dead {
		body := d.Data
		if sess.user.Role != RoleOperator {
			body = messages.Redact(body) // auditors see personal data masked
		}
		dead = append(dead, deadRow{DeadLetter: d, Body: indent(body)})
	}
	var results []map[string]any
	for _, res := range trail.Results {
		results = append(results, map[string]any{"R": res, "JSON": indent(mustJSON(res))})
	}
	s.render(w, r, sess, "filing", map[string]any{"Tenant": tenant, "ID": id, "Summary": summary, "Timeline": rows, "Results": results,
		"Dead": dead, "Entry": trail.Entry, "Trace": traceID(tenant, id)})
}

// traceID is the trace every delivery of a request joins when its
// message carried no traceparent (tracing.Extract).
func traceID(tenant, id string) string {
	_ = tenant
	ctx := tracing.Extract(context.Background(), nil, id)
	return spanContext(ctx)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// indent is a JSON document indented for reading; anything else as is.
func indent(data []byte) string {
	var buf bytes.Buffer
	if json.Indent(&buf, data, "", "  ") != nil {
		return string(data)
	}
	return buf.String()
}

// proof downloads a filing's proof (operator.ReadProof).
func (s *Server) proof(ctx context.Context, w http.ResponseWriter, r *http.Request, sess *session, tenant, id string) {
	p, err := operator.ReadProof(ctx, s.cfg.JS, s.cfg.Model, s.cfg.Subjects.For(tenant), id, s.cfg.Now())
	if err != nil {
		s.fail(w, r, sess, http.StatusBadGateway, err)
		return
	}
	p.ExportedBy = sess.user.Name
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="proof-%s.json"`, messages.IDKey(tenant + "/" + id)[:12]))
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(p)
	s.cfg.Log.Info("console: a proof exported", zap.String("user", sess.user.Name), zap.String("request_id", messages.Truncate(id, messages.MaxIDLen)))
}

// work lists what needs a person: dead letters and ambiguous filings.
func (s *Server) work(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx := r.Context()
	dead, err := s.cfg.Model.Dead(ctx, "", "", 500)
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, err)
		return
	}
	amb, err := s.cfg.Model.Filings(ctx, readmodel.Filter{Status: readmodel.StatusAmbiguous, Limit: 500})
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, err)
		return
	}
	s.render(w, r, sess, "work", map[string]any{"Dead": dead, "Ambiguous": amb.Filings})
}

// act gives an operator's order: first a page that asks to confirm it,
// then, confirmed, the order itself, under the signed-in user's name.
func (s *Server) act(w http.ResponseWriter, r *http.Request, sess *session) {
	if sess.user.Role != RoleOperator {
		s.fail(w, r, sess, http.StatusForbidden, errors.New("only an operator may act; an auditor reads"))
		return
	}
	a := control.Action(r.PostFormValue("action"))
	o := control.Order{RequestID: r.PostFormValue("id"), Tenant: r.PostFormValue("tenant"), Reason: strings.TrimSpace(r.PostFormValue("reason")),
		Decision: messages.Decision(r.PostFormValue("decision")), Record: strings.TrimSpace(r.PostFormValue("record")),
		Force: r.PostFormValue("force") == "yes"}
	if seq := r.PostFormValue("seq"); seq != "" {
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil {
			s.fail(w, r, sess, http.StatusBadRequest, errors.New("seq: a dead letter's sequence"))
			return
		}
		o.Seq, o.RequestID, o.Tenant = n, "", ""
	}
	if err := o.Validate(a); err != nil {
		s.fail(w, r, sess, http.StatusBadRequest, err)
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		s.render(w, r, sess, "confirm", map[string]any{"Action": a, "Order": o, "Form": r.PostForm})
		return
	}
	rep, err := s.cfg.Orders.Give(sess.user.Name, a, o)
	s.render(w, r, sess, "done", map[string]any{"Action": a, "Order": o, "Report": rep, "Error": errString(err)})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// overview draws the last two days: filings per hour by status and api,
// the vendors' latency, retries and holds, breakers.
func (s *Server) overview(w http.ResponseWriter, r *http.Request, sess *session) {
	now := s.cfg.Now()
	hours, err := s.cfg.Model.Overview(r.Context(), now.Add(-47*time.Hour))
	if err != nil {
		s.fail(w, r, sess, http.StatusInternalServerError, err)
		return
	}
	s.render(w, r, sess, "overview", map[string]any{"Charts": charts(hours, now), "Totals": totals(hours), "Statuses": readmodel.Statuses})
}
