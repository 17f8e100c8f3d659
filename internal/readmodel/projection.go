package readmodel

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/messages"
)

// How the projection reads: it waits up to idleWait for a stream's next
// message (so that the dead letters' stream is looked at for removals at
// least that often), then gathers what follows within gatherWait, up to
// batchSize messages a transaction. A new result is searchable as soon
// as its transaction commits.
const (
	batchSize  = 1000
	idleWait   = 2 * time.Second
	gatherWait = 5 * time.Millisecond
)

// codeIDReused is the code of a rejection that belongs to a message
// reusing an id, not to the filing of that id.
const codeIDReused = "IdReused"

// batch is what one fetch read from one stream, applied in one
// transaction with the stream's new position.
type batch struct {
	stream  string
	created int64
	msgs    []*jetstream.RawStreamMsg
	// A look at the dead letters' stream: the letters below first and
	// those deleted are gone.
	synced  bool
	first   uint64
	deleted []uint64
}

// Follow keeps the model up to date with the streams until ctx ends, from
// where it stopped: each stream is read from the sequence after the last
// one applied. A stream created anew since (its creation time changed)
// starts the model anew. Follow returns when ctx ends (nil) or a stream
// cannot be read (the caller follows again after a pause).
func (m *Model) Follow(ctx context.Context, js jetstream.JetStream) error {
	starts, err := m.starts(ctx, js)
	if err != nil {
		return err
	}
	batches := make(chan batch)
	g, gctx := errgroup.WithContext(ctx)
	for name, st := range starts {
		g.Go(func() error { return m.read(gctx, js, name, st, batches) })
	}
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case b := <-batches:
				if err := m.apply(gctx, b); err != nil {
					return err
				}
			}
		}
	})
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// start is where one stream is read from.
type start struct {
	seq     uint64
	created int64
}

// starts reads the streams' creation times and the model's positions;
// a stream created anew (or the model's position beyond its end) empties
// the model.
func (m *Model) starts(ctx context.Context, js jetstream.JetStream) (map[string]start, error) {
	out := map[string]start{}
	fresh := false
	for _, name := range []string{m.streams.Results, m.streams.Audit, m.streams.Dead} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("readmodel: stream %s: %w", name, err)
		}
		info := s.CachedInfo()
		var seq uint64
		var created int64
		err = m.db.QueryRowContext(ctx, "SELECT seq, created FROM cursors WHERE stream = ?", name).Scan(&seq, &created)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return nil, err
		case created != info.Created.UnixNano() || seq > info.State.LastSeq:
			fresh = true
		}
		out[name] = start{seq: seq + 1, created: info.Created.UnixNano()}
	}
	if fresh {
		if err := m.Rebuild(ctx); err != nil {
			return nil, err
		}
		for name, st := range out {
			out[name] = start{seq: 1, created: st.created}
		}
	}
	return out, nil
}

// read fetches one stream from st, in order, and hands each fetch over.
func (m *Model) read(ctx context.Context, js jetstream.JetStream, name string, st start, out chan<- batch) error {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: st.seq})
	if err != nil {
		return fmt.Errorf("readmodel: reading %s: %w", name, err)
	}
	it, err := oc.Messages(jetstream.PullMaxMessages(batchSize))
	if err != nil {
		return fmt.Errorf("readmodel: reading %s: %w", name, err)
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Stop)()
	for {
		b := batch{stream: name, created: st.created}
		wait := idleWait
		for len(b.msgs) < batchSize {
			msg, err := it.Next(jetstream.NextMaxWait(wait))
			if errors.Is(err, nats.ErrTimeout) {
				break
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("readmodel: reading %s: %w", name, err)
			}
			wait = gatherWait
			md, err := msg.Metadata()
			if err != nil {
				continue
			}
			b.msgs = append(b.msgs, &jetstream.RawStreamMsg{Subject: msg.Subject(), Sequence: md.Sequence.Stream, Header: msg.Headers(), Data: msg.Data(), Time: md.Timestamp})
		}
		if name == m.streams.Dead {
			info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("readmodel: reading %s: %w", name, err)
			}
			b.synced, b.first, b.deleted = true, info.State.FirstSeq, info.State.Deleted
		}
		if len(b.msgs) == 0 && !b.synced {
			continue
		}
		select {
		case out <- b:
		case <-ctx.Done():
			return nil
		}
	}
}

// apply folds one batch into the model, with the stream's new position,
// in one transaction: a message is applied once, however often it is
// read.
func (m *Model) apply(ctx context.Context, b batch) error {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	a := &applier{ctx: ctx, tx: tx, subjects: m.subjects, stmts: map[string]*sql.Stmt{}}
	defer a.close()
	var last uint64
	for _, msg := range b.msgs {
		switch b.stream {
		case m.streams.Results:
			err = a.result(msg)
		case m.streams.Audit:
			err = a.event(msg)
		case m.streams.Dead:
			err = a.dead(msg)
		}
		if err != nil {
			return fmt.Errorf("readmodel: applying %s %d: %w", b.stream, msg.Sequence, err)
		}
		last = msg.Sequence
	}
	if last > 0 {
		if _, err := tx.ExecContext(ctx, `INSERT INTO cursors (stream, seq, created) VALUES (?, ?, ?)
			ON CONFLICT (stream) DO UPDATE SET seq = excluded.seq, created = excluded.created`, b.stream, last, b.created); err != nil {
			return err
		}
	}
	if b.synced {
		if _, err := tx.ExecContext(ctx, "DELETE FROM dead WHERE seq < ?", b.first); err != nil {
			return err
		}
		for _, seq := range b.deleted {
			if _, err := tx.ExecContext(ctx, "DELETE FROM dead WHERE seq = ?", seq); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// applier applies messages within one transaction, each statement
// prepared once.
type applier struct {
	ctx      context.Context
	tx       *sql.Tx
	subjects messages.Subjects
	stmts    map[string]*sql.Stmt
}

func (a *applier) stmt(query string) (*sql.Stmt, error) {
	if st, ok := a.stmts[query]; ok {
		return st, nil
	}
	st, err := a.tx.PrepareContext(a.ctx, query)
	if err != nil {
		return nil, err
	}
	a.stmts[query] = st
	return st, nil
}

func (a *applier) exec(query string, args ...any) (sql.Result, error) {
	st, err := a.stmt(query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(a.ctx, args...)
}

func (a *applier) close() {
	for _, st := range a.stmts {
		st.Close()
	}
}

// Status values of a filing in the model: a result's status, but a
// failed outcome of class ambiguous is "ambiguous" (someone must find out
// whether the vendor holds it), and a filing received without an outcome
// yet is "in_progress".
const (
	StatusInProgress = "in_progress"
	StatusAmbiguous  = "ambiguous"
)

// EventRetry counts, in the overview, the attempts after a filing's
// first.
const EventRetry = "retry"

// Statuses are the status values, in the order a page shows them.
var Statuses = []string{StatusInProgress, string(messages.StatusSucceeded), StatusAmbiguous, string(messages.StatusFailed), string(messages.StatusRejected)}

// result folds a result in: the filing's outcome becomes the result in
// force, the one with the latest completed_at.
func (a *applier) result(msg *jetstream.RawStreamMsg) error {
	var r messages.Result
	if json.Unmarshal(msg.Data, &r) != nil {
		return nil // not a result: nothing to fold in
	}
	if r.Error != nil && r.Error.Code == codeIDReused {
		return nil // the reusing message's answer, not the filing's outcome
	}
	key := r.RequestID
	if key == "" {
		if r.StreamSeq == 0 {
			return nil
		}
		key = "#seq:" + strconv.FormatUint(r.StreamSeq, 10) // '#' is in no request id
	}
	status := string(r.Status)
	var code, class string
	if r.Error != nil {
		code, class = bound(r.Error.Code, 64), bound(r.Error.Class, 32)
		if r.Status == messages.StatusFailed && r.Error.Class == messages.ClassAmbiguous {
			status = StatusAmbiguous
		}
	}
	received := r.ReceivedAt
	if received.IsZero() {
		received = r.CompletedAt
	}
	meta := ""
	if len(r.Metadata) > 0 {
		b, _ := json.Marshal(r.Metadata)
		meta = string(b)
	}
	record := Record(r)
	before, err := a.bucket(r.Tenant, key)
	if err != nil {
		return err
	}
	res, err := a.exec(`INSERT INTO filings
		(tenant, key, request_id, api, account, status, code, class, attempts, record, merchant, metadata, received_at, completed_at, result_seq, last_event, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant, key) DO UPDATE SET
			api = excluded.api, account = excluded.account, status = excluded.status, code = excluded.code, class = excluded.class,
			attempts = max(filings.attempts, excluded.attempts), record = excluded.record, merchant = excluded.merchant, metadata = excluded.metadata,
			received_at = min(filings.received_at, excluded.received_at), completed_at = excluded.completed_at, result_seq = excluded.result_seq,
			last_event = CASE WHEN filings.updated_at <= excluded.updated_at THEN excluded.last_event ELSE filings.last_event END,
			updated_at = max(filings.updated_at, excluded.updated_at)
		WHERE filings.result_seq = 0 OR excluded.completed_at > filings.completed_at
			OR (excluded.completed_at = filings.completed_at AND excluded.result_seq > filings.result_seq)`,
		r.Tenant, key, bound(r.RequestID, messages.MaxIDLen), apiLabel(r.API), bound(r.Account, messages.MaxAccountLen), status, code, class,
		r.Attempts, record, bound(r.Metadata["merchant"], 256), meta, received.UnixMilli(), r.CompletedAt.UnixMilli(), msg.Sequence,
		"result", r.CompletedAt.UnixMilli())
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // an earlier outcome than the one in force: its terms are the filing's already
	}
	if err := a.move(before, &bucket{tenant: r.Tenant, api: apiLabel(r.API), account: bound(r.Account, messages.MaxAccountLen), status: status}); err != nil {
		return err
	}
	terms := []string{r.RequestID, record, r.UpstreamRequestID, r.RequestIDSHA256}
	for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
		terms = append(terms, r.Metadata[k])
	}
	return a.terms(r.Tenant, key, terms)
}

// terms records what a search finds filing (tenant, key) by.
func (a *applier) terms(tenant, key string, terms []string) error {
	var id int64
	st, err := a.stmt("SELECT id FROM filings WHERE tenant = ? AND key = ?")
	if err != nil {
		return err
	}
	if err := st.QueryRowContext(a.ctx, tenant, key).Scan(&id); err != nil {
		return err
	}
	for _, t := range terms {
		if t = term(t); t == "" {
			continue
		}
		if _, err := a.exec("INSERT OR IGNORE INTO terms (term, filing) VALUES (?, ?)", t, id); err != nil {
			return err
		}
	}
	return nil
}

// event folds an audit event in, once by its identity: into the hourly
// figures, and into its filing's progress (a received filing is listed
// before it has an outcome).
func (a *applier) event(msg *jetstream.RawStreamMsg) error {
	var ev messages.AuditEvent
	if json.Unmarshal(msg.Data, &ev) != nil {
		return nil
	}
	id := ev.ID
	if id == "" {
		id = "seq:" + strconv.FormatUint(msg.Sequence, 10) // an older release's event: applied once by its position
	}
	sum := sha256.Sum256([]byte(id))
	res, err := a.exec("INSERT OR IGNORE INTO seen (h) VALUES (?)", int64(binary.BigEndian.Uint64(sum[:8])))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err // a copy of an event applied already
	}
	at := ev.Time.UTC()
	if at.IsZero() {
		at = msg.Time.UTC()
	}
	api := apiLabel(ev.API)
	if strings.HasPrefix(string(ev.API), "breaker.") {
		api = bound(string(ev.API), 32)
	}
	var ms float64
	if ev.Event == messages.EventAttempt {
		ms = ev.DurationMS
	}
	counted := []string{bound(ev.Event, 32)}
	if ev.Event == messages.EventAttempt && ev.Attempt > 1 {
		counted = append(counted, EventRetry)
	}
	for _, name := range counted {
		if _, err := a.exec(`INSERT INTO stats (hour, api, event, class, n, ms_sum, ms_max) VALUES (?, ?, ?, ?, 1, ?, ?)
			ON CONFLICT (hour, api, event, class) DO UPDATE SET n = n + 1, ms_sum = ms_sum + excluded.ms_sum, ms_max = max(ms_max, excluded.ms_max)`,
			at.Truncate(time.Hour).UnixMilli(), api, name, bound(ev.Class, 32), ms, ms); err != nil {
			return err
		}
	}
	if ev.RequestID == "" {
		return nil
	}
	if ev.Event == messages.EventReceived {
		before, err := a.bucket(ev.Tenant, ev.RequestID)
		if err != nil {
			return err
		}
		if before == nil {
			if err := a.move(nil, &bucket{tenant: ev.Tenant, api: api, account: bound(ev.Account, messages.MaxAccountLen), status: StatusInProgress}); err != nil {
				return err
			}
		}
		if _, err := a.exec(`INSERT INTO filings (tenant, key, request_id, api, account, status, received_at)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tenant, key) DO UPDATE SET received_at = min(filings.received_at, excluded.received_at)`,
			ev.Tenant, ev.RequestID, bound(ev.RequestID, messages.MaxIDLen), api, bound(ev.Account, messages.MaxAccountLen), StatusInProgress, at.UnixMilli()); err != nil {
			return err
		}
		if err := a.terms(ev.Tenant, ev.RequestID, []string{ev.RequestID}); err != nil {
			return err
		}
	}
	// The latest event is the filing's last; an outcome's result, read
	// from another stream, wins a tie, whichever is read first.
	_, err = a.exec(`UPDATE filings SET attempts = max(attempts, ?3),
		last_event = CASE WHEN updated_at < ?2 OR (updated_at = ?2 AND last_event != 'result') THEN ?1 ELSE last_event END,
		updated_at = max(updated_at, ?2)
		WHERE tenant = ?4 AND key = ?5`,
		bound(ev.Event, 32), at.UnixMilli(), ev.Attempt, ev.Tenant, ev.RequestID)
	return err
}

// bucket is what a filing is counted under in totals.
type bucket struct{ tenant, api, account, status string }

// bucket returns the bucket filing (tenant, key) is counted under, nil
// when the model has no such filing yet.
func (a *applier) bucket(tenant, key string) (*bucket, error) {
	st, err := a.stmt("SELECT api, account, status FROM filings WHERE tenant = ? AND key = ?")
	if err != nil {
		return nil, err
	}
	b := bucket{tenant: tenant}
	err = st.QueryRowContext(a.ctx, tenant, key).Scan(&b.api, &b.account, &b.status)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return &b, err
}

// move counts a filing under to instead of from (nil: a new filing).
func (a *applier) move(from, to *bucket) error {
	if from != nil && *from == *to {
		return nil
	}
	if from != nil {
		if _, err := a.exec("UPDATE totals SET n = n - 1 WHERE tenant = ? AND api = ? AND account = ? AND status = ?",
			from.tenant, from.api, from.account, from.status); err != nil {
			return err
		}
	}
	_, err := a.exec(`INSERT INTO totals (tenant, api, account, status, n) VALUES (?, ?, ?, ?, 1)
		ON CONFLICT (tenant, api, account, status) DO UPDATE SET n = n + 1`, to.tenant, to.api, to.account, to.status)
	return err
}

// dead folds a dead letter in.
func (a *applier) dead(msg *jetstream.RawStreamMsg) error {
	d := operator.Letter(a.subjects, msg)
	var at int64
	if t, err := time.Parse(time.RFC3339Nano, d.DeadAt); err == nil {
		at = t.UnixMilli()
	} else {
		at = msg.Time.UnixMilli()
	}
	_, err := a.exec(`INSERT OR IGNORE INTO dead (seq, tenant, request_id, api, reason, class, dead_at, deliveries)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, msg.Sequence, d.Tenant, bound(d.RequestID, messages.MaxIDLen), apiLabel(d.API),
		bound(d.Reason, 512), bound(d.Class, 32), at, d.Deliveries)
	return err
}

// Record is the vendor's record of a result: VMS's QualificationNo, the
// SMS qualification's id, Douyin's add_role task id, or the record an
// operator found it filed as.
func Record(r messages.Result) string {
	if r.Resolution != nil && r.Resolution.Record != "" {
		return bound(r.Resolution.Record, 128)
	}
	var v struct {
		QualificationNo string `json:"QualificationNo"`
		IDString        string `json:"id_string"`
		TaskID          string `json:"add_role_taskid"`
	}
	if len(r.Result) == 0 || json.Unmarshal(r.Result, &v) != nil {
		return ""
	}
	return bound(v.QualificationNo+v.IDString+v.TaskID, 128)
}

// apiLabel is an api as the model keeps it: a known api or "unknown".
func apiLabel(api messages.API) string {
	if api.Valid() {
		return string(api)
	}
	return "unknown"
}

// bound cuts s to at most n bytes of valid UTF-8.
func bound(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// term is a value as a search finds it: lower case, at most 256 bytes.
func term(s string) string { return bound(strings.ToLower(strings.TrimSpace(s)), 256) }

// CatchUp follows the streams until the model holds every message they
// held when it began (a command's one look, as `publisher list` takes
// it), then stops.
func (m *Model) CatchUp(ctx context.Context, js jetstream.JetStream) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type end struct {
		last    uint64
		deleted map[uint64]bool
	}
	ends := map[string]end{}
	for _, name := range []string{m.streams.Results, m.streams.Audit, m.streams.Dead} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("readmodel: stream %s: %w", name, err)
		}
		info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
		if err != nil {
			return fmt.Errorf("readmodel: stream %s: %w", name, err)
		}
		e := end{last: info.State.LastSeq, deleted: map[uint64]bool{}}
		for _, seq := range info.State.Deleted {
			e.deleted[seq] = true
		}
		ends[name] = e
	}
	done := make(chan error, 1)
	go func() { done <- m.Follow(ctx, js) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err == nil {
				err = ctx.Err()
			}
			return err
		case <-tick.C:
		}
		applied, err := m.Applied(ctx)
		if err != nil {
			return err
		}
		caught := true
		for name, e := range ends {
			// Caught up once applied to the end, or to a run of deleted
			// messages that ends it.
			for seq := applied[name] + 1; seq <= e.last && caught; seq++ {
				caught = e.deleted[seq]
			}
		}
		if caught {
			cancel()
			<-done
			return nil
		}
	}
}
