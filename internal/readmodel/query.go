package readmodel

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/qualfile/qualfile/messages"
)

// DefaultTenant names the default tenant in a Filter ("" is every
// tenant): no tenant can be named so.
const DefaultTenant = "-"

// Page sizes.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
	// MinQuery is the shortest search, in bytes (one Chinese character is
	// three): a shorter start of a value matches too much to be meant.
	MinQuery = 3
	MaxQuery = 256
)

// Filter chooses filings. Its zero value chooses every filing.
type Filter struct {
	Status  string       // one of Statuses, or "" for every status
	API     messages.API // "" for every api
	Tenant  string       // a tenant, DefaultTenant, or "" for every tenant
	Account string
	// From and To bound when the filing was received: [From, To).
	From, To time.Time
	// Query finds filings whose request id, vendor record, upstream
	// request id or a metadata value (the merchant) starts with it, in
	// any case.
	Query string
	// After is the Next of the page before; a page follows on from it
	// however many filings arrive meanwhile.
	After string
	Limit int // DefaultLimit when 0, at most MaxLimit
}

// Validate reports each rule f breaks, as a *messages.ValidationError
// (matching ErrInvalidFilter).
func (f Filter) Validate() error {
	var fs []messages.FieldError
	bad := func(field, problem string) { fs = append(fs, messages.FieldError{Field: field, Problem: problem}) }
	if f.Status != "" && !slices.Contains(Statuses, f.Status) {
		bad("status", "one of "+strings.Join(Statuses, ", "))
	}
	if f.API != "" && !f.API.Valid() {
		bad("api", "not a known api")
	}
	if f.Tenant != "" && f.Tenant != DefaultTenant && !messages.ValidTenant(f.Tenant) {
		bad("tenant", "not a tenant's name")
	}
	if len(f.Account) > messages.MaxAccountLen {
		bad("account", fmt.Sprintf("at most %d characters", messages.MaxAccountLen))
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		bad("to", "must be after from")
	}
	if q := strings.TrimSpace(f.Query); q != "" && (len(q) < MinQuery || len(q) > MaxQuery || !utf8.ValidString(q)) {
		bad("q", fmt.Sprintf("%d to %d bytes of text (a Chinese character is 3)", MinQuery, MaxQuery))
	}
	if _, _, err := parseCursor(f.After); err != nil {
		bad("after", "not a page's cursor")
	}
	if f.Limit < 0 || f.Limit > MaxLimit {
		bad("limit", fmt.Sprintf("0 to %d", MaxLimit))
	}
	if len(fs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidFilter, &messages.ValidationError{Fields: fs})
	}
	return nil
}

// Filing is one filing as the model knows it.
type Filing struct {
	Tenant      string            `json:"tenant,omitempty"`
	RequestID   string            `json:"request_id"`
	Key         string            `json:"-"` // the request id, or #seq:<n> for a request without a usable one
	API         string            `json:"api"`
	Account     string            `json:"account"`
	Status      string            `json:"status"`
	Code        string            `json:"code,omitempty"`
	Class       string            `json:"class,omitempty"`
	Attempts    int               `json:"attempts"`
	Record      string            `json:"record,omitempty"`
	Merchant    string            `json:"merchant,omitempty"`
	Metadata    map[string]string `json:"metadata,omitempty"`
	ReceivedAt  time.Time         `json:"received_at"`
	CompletedAt time.Time         `json:"completed_at,omitzero"`
	LastEvent   string            `json:"last_event,omitempty"`
	UpdatedAt   time.Time         `json:"updated_at,omitzero"`
	ResultSeq   uint64            `json:"result_seq,omitempty"` // the result in force, in the results stream
}

// Page is one page of filings, newest received first.
type Page struct {
	Filings []Filing `json:"filings"`
	// Next is the cursor of the next page (Filter.After); "" on the last.
	Next string `json:"next,omitempty"`
}

const filingColumns = `id, tenant, key, request_id, api, account, status, code, class, attempts, record, merchant, metadata,
	received_at, completed_at, result_seq, last_event, updated_at`

// Filings returns a page of the filings f chooses.
func (m *Model) Filings(ctx context.Context, f Filter) (Page, error) {
	if err := f.Validate(); err != nil {
		return Page{}, err
	}
	limit := f.Limit
	if limit == 0 {
		limit = DefaultLimit
	}
	where, args := f.where(true)
	if f.After != "" {
		at, id, _ := parseCursor(f.After)
		where = append(where, "(received_at, id) < (?, ?)")
		args = append(args, at, id)
	}
	q := "SELECT " + filingColumns + " FROM filings" + and(where) + " ORDER BY received_at DESC, id DESC LIMIT ?"
	rows, err := m.db.QueryContext(ctx, q, append(args, limit+1)...)
	if err != nil {
		return Page{}, err
	}
	defer rows.Close()
	var p Page
	var ids []int64
	for rows.Next() {
		fl, id, err := scanFiling(rows)
		if err != nil {
			return Page{}, err
		}
		p.Filings, ids = append(p.Filings, fl), append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return Page{}, err
	}
	if len(p.Filings) > limit {
		p.Filings, ids = p.Filings[:limit], ids[:limit]
		last := p.Filings[limit-1]
		p.Next = strconv.FormatInt(last.ReceivedAt.UnixMilli(), 10) + "." + strconv.FormatInt(ids[limit-1], 10)
	}
	return p, nil
}

// Counts returns how many filings f chooses of each status, f's own
// status aside.
func (m *Model) Counts(ctx context.Context, f Filter) (map[string]int, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	where, args := f.where(false)
	table, n := "filings", "count(*)"
	if f.From.IsZero() && f.To.IsZero() && term(f.Query) == "" {
		table, n = "totals", "sum(n)" // kept as filings change: no filing counted one by one
	}
	rows, err := m.db.QueryContext(ctx, "SELECT status, "+n+" FROM "+table+and(where)+" GROUP BY status", args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		if n > 0 {
			out[s] = n
		}
	}
	return out, rows.Err()
}

// Filing returns the filing of tenant's request id ("" the default
// tenant's).
func (m *Model) Filing(ctx context.Context, tenant, key string) (Filing, error) {
	row := m.db.QueryRowContext(ctx, "SELECT "+filingColumns+" FROM filings WHERE tenant = ? AND key = ?", tenant, key)
	f, _, err := scanFiling(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Filing{}, ErrNotFound
	}
	return f, err
}

// where is f as SQL conditions and their arguments; withStatus false
// leaves f's status out.
func (f Filter) where(withStatus bool) ([]string, []any) {
	var where []string
	var args []any
	eq := func(col string, v any) {
		where = append(where, col+" = ?")
		args = append(args, v)
	}
	if withStatus && f.Status != "" {
		eq("status", f.Status)
	}
	if f.API != "" {
		eq("api", string(f.API))
	}
	switch f.Tenant {
	case "":
	case DefaultTenant:
		eq("tenant", "")
	default:
		eq("tenant", f.Tenant)
	}
	if f.Account != "" {
		eq("account", f.Account)
	}
	if !f.From.IsZero() {
		where, args = append(where, "received_at >= ?"), append(args, f.From.UnixMilli())
	}
	if !f.To.IsZero() {
		where, args = append(where, "received_at < ?"), append(args, f.To.UnixMilli())
	}
	if q := term(f.Query); q != "" {
		// Byte 0xFF follows every UTF-8 text that starts with q.
		where = append(where, "id IN (SELECT filing FROM terms WHERE term >= ? AND term < ?)")
		args = append(args, q, q+"\xff")
	}
	return where, args
}

func and(where []string) string {
	if len(where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(where, " AND ")
}

// parseCursor reads a page's cursor: received_at.id.
func parseCursor(s string) (at, id int64, err error) {
	if s == "" {
		return 0, 0, nil
	}
	a, b, ok := strings.Cut(s, ".")
	if at, err = strconv.ParseInt(a, 10, 64); err != nil || !ok {
		return 0, 0, errors.New("bad cursor")
	}
	if id, err = strconv.ParseInt(b, 10, 64); err != nil {
		return 0, 0, errors.New("bad cursor")
	}
	return at, id, nil
}

type scanner interface{ Scan(...any) error }

func scanFiling(s scanner) (Filing, int64, error) {
	var f Filing
	var id, received, completed, updated int64
	var meta string
	if err := s.Scan(&id, &f.Tenant, &f.Key, &f.RequestID, &f.API, &f.Account, &f.Status, &f.Code, &f.Class, &f.Attempts,
		&f.Record, &f.Merchant, &meta, &received, &completed, &f.ResultSeq, &f.LastEvent, &updated); err != nil {
		return Filing{}, 0, err
	}
	f.ReceivedAt = time.UnixMilli(received).UTC()
	if completed > 0 {
		f.CompletedAt = time.UnixMilli(completed).UTC()
	}
	if updated > 0 {
		f.UpdatedAt = time.UnixMilli(updated).UTC()
	}
	if meta != "" {
		_ = json.Unmarshal([]byte(meta), &f.Metadata)
	}
	return f, id, nil
}

// DeadLetter is a dead letter still in its stream.
type DeadLetter struct {
	Seq        uint64    `json:"seq"`
	Tenant     string    `json:"tenant,omitempty"`
	RequestID  string    `json:"request_id"`
	API        string    `json:"api"`
	Reason     string    `json:"reason"`
	Class      string    `json:"class"`
	DeadAt     time.Time `json:"dead_at"`
	Deliveries int       `json:"deliveries"`
}

// Dead returns up to limit of the dead letters still in their stream,
// the newest first, of tenant's request id when it is not "".
func (m *Model) Dead(ctx context.Context, tenant, requestID string, limit int) ([]DeadLetter, error) {
	q, args := "SELECT seq, tenant, request_id, api, reason, class, dead_at, deliveries FROM dead", []any{}
	if requestID != "" {
		q, args = q+" WHERE tenant = ? AND request_id = ?", append(args, tenant, requestID)
	}
	rows, err := m.db.QueryContext(ctx, q+" ORDER BY seq DESC LIMIT ?", append(args, limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []DeadLetter
	for rows.Next() {
		var d DeadLetter
		var at int64
		if err := rows.Scan(&d.Seq, &d.Tenant, &d.RequestID, &d.API, &d.Reason, &d.Class, &at, &d.Deliveries); err != nil {
			return nil, err
		}
		d.DeadAt = time.UnixMilli(at).UTC()
		out = append(out, d)
	}
	return out, rows.Err()
}

// Hour is one hour of the overview.
type Hour struct {
	Start time.Time
	// Filings received in the hour, by api and status.
	Filings map[string]map[string]int
	// Events counts audit events by api and event ("attempt", "deferred",
	// "breaker_open", ...), each copy once; "retry" counts the attempts
	// after a filing's first.
	Events map[string]map[string]int
	// Latency is the vendor's mean and slowest answer to an attempt, in
	// milliseconds, by api.
	MeanMS, MaxMS map[string]float64
}

// Overview returns the hours from since to now, the oldest first.
func (m *Model) Overview(ctx context.Context, since time.Time) ([]Hour, error) {
	since = since.UTC().Truncate(time.Hour)
	hours := map[int64]*Hour{}
	hour := func(ms int64) *Hour {
		h := hours[ms]
		if h == nil {
			h = &Hour{Start: time.UnixMilli(ms).UTC(), Filings: map[string]map[string]int{}, Events: map[string]map[string]int{},
				MeanMS: map[string]float64{}, MaxMS: map[string]float64{}}
			hours[ms] = h
		}
		return h
	}
	rows, err := m.db.QueryContext(ctx, `SELECT received_at / 3600000 * 3600000, api, status, count(*) FROM filings
		WHERE received_at >= ? GROUP BY 1, 2, 3`, since.UnixMilli())
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var at int64
		var api, status string
		var n int
		if err := rows.Scan(&at, &api, &status, &n); err != nil {
			rows.Close()
			return nil, err
		}
		h := hour(at)
		if h.Filings[api] == nil {
			h.Filings[api] = map[string]int{}
		}
		h.Filings[api][status] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = m.db.QueryContext(ctx, `SELECT hour, api, event, sum(n), sum(ms_sum), max(ms_max) FROM stats
		WHERE hour >= ? GROUP BY 1, 2, 3`, since.UnixMilli())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var at int64
		var api, event string
		var n int
		var sum, max float64
		if err := rows.Scan(&at, &api, &event, &n, &sum, &max); err != nil {
			return nil, err
		}
		h := hour(at)
		if h.Events[api] == nil {
			h.Events[api] = map[string]int{}
		}
		h.Events[api][event] += n
		if event == messages.EventAttempt && n > 0 {
			h.MeanMS[api], h.MaxMS[api] = sum/float64(n), max
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Hour, 0, len(hours))
	for _, h := range hours {
		out = append(out, *h)
	}
	slices.SortFunc(out, func(a, b Hour) int { return a.Start.Compare(b.Start) })
	return out, nil
}

// Applied returns the last sequence applied of each stream.
func (m *Model) Applied(ctx context.Context) (map[string]uint64, error) {
	rows, err := m.db.QueryContext(ctx, "SELECT stream, seq FROM cursors")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var name string
		var seq uint64
		if err := rows.Scan(&name, &seq); err != nil {
			return nil, err
		}
		out[name] = seq
	}
	return out, rows.Err()
}

// DeadSeqs returns the sequences of the dead letters of tenant's request
// id still in their stream (operator.DeadIndex), up to a thousand.
func (m *Model) DeadSeqs(ctx context.Context, tenant, id string) ([]uint64, error) {
	rows, err := m.db.QueryContext(ctx, "SELECT seq FROM dead WHERE tenant = ? AND request_id = ? ORDER BY seq LIMIT 1000", tenant, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []uint64
	for rows.Next() {
		var seq uint64
		if err := rows.Scan(&seq); err != nil {
			return nil, err
		}
		out = append(out, seq)
	}
	return out, rows.Err()
}
