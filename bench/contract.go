package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// contractEntry is the contract pipeline's ledger entry: what an entry
// must say to keep a filing from being made twice (the state, the call's
// nonce, its owner) and, once done, the outcome a copy is answered with.
type contractEntry struct {
	RequestID   string           `json:"request_id"`
	API         messages.API     `json:"api"`
	State       string           `json:"state"`
	Attempts    int              `json:"attempts"`
	Owner       string           `json:"owner"`
	Nonce       string           `json:"nonce"`
	Fingerprint string           `json:"fingerprint"`
	Seq         uint64           `json:"seq"`
	UpdatedAt   time.Time        `json:"updated_at"`
	Result      *messages.Result `json:"result,omitempty"`
}

// startContract runs the physical limit of qualfile's contract: a
// hand-written nats.go pipeline that validates with qualfile's rules and
// stores exactly what qualfile must per filing, waiting where its
// guarantees must wait. Per request: consume; validate; create the ledger
// entry (calling, with a nonce), awaited; the call; update the entry to
// done on that revision, awaited; publish the three audit events
// (received with the redacted payload, attempt, succeeded) and the result,
// each with its message id, asynchronously, awaited together; double ack.
// It has no retries, leases, reconciliation, breakers, tracing, logs or
// metrics: what is left is the cost of the stored writes.
func startContract(ctx context.Context, nc *nats.Conn, w workerConfig) (func(), error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4*w.concurrency))
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, queue.BucketNames(w.subjects()).Ledger)
	if err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, w.streams().Requests, jetstream.ConsumerConfig{
		Durable: "contract", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		MaxAckPending: max(1024, 2*w.concurrency),
	})
	if err != nil {
		return nil, err
	}
	ref := newReference(w.prefix, w.upstream, w.concurrency)
	s := w.subjects()
	slots := make(chan struct{}, w.concurrency)
	var handlers sync.WaitGroup
	handle := func(m jetstream.Msg) {
		defer func() { <-slots; handlers.Done() }()
		if err := fileContract(ctx, js, kv, ref, s, m); err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
		_ = m.DoubleAck(ctx)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		slots <- struct{}{}
		handlers.Add(1)
		go handle(m)
	}, jetstream.PullMaxMessages(w.concurrency))
	if err != nil {
		return nil, err
	}
	return func() {
		cc.Stop()
		handlers.Wait()
	}, nil
}

// fileContract is one filing of the contract pipeline, up to its ack.
func fileContract(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, ref *reference, s messages.Subjects, m jetstream.Msg) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	req, res, err := ref.check(m.Subject(), m.Data())
	if err != nil {
		return err
	}
	var events []messages.AuditEvent
	event := func(name string, ev messages.AuditEvent) {
		ev.SchemaVersion, ev.RequestID, ev.API, ev.Account, ev.Event = messages.SchemaVersion, res.RequestID, res.API, res.Account, name
		ev.Seq, ev.Time, ev.Delivery = len(events)+1, time.Now().UTC(), int(md.NumDelivered)
		ev.ID = fmt.Sprintf("contract/%d/%d/%s", md.Sequence.Stream, md.NumDelivered, name)
		events = append(events, ev)
	}
	if res.Status == "" {
		key, err := ledger.Key("", req.ID)
		if err != nil {
			return err
		}
		var nonce [8]byte
		_, _ = rand.Read(nonce[:])
		entry := contractEntry{RequestID: req.ID, API: req.API, State: "calling", Attempts: 1, Owner: "contract",
			Nonce: hex.EncodeToString(nonce[:]), Fingerprint: req.Fingerprint(), Seq: md.Sequence.Stream, UpdatedAt: time.Now().UTC()}
		data, _ := json.Marshal(entry)
		rev, err := kv.Create(ctx, key, data)
		if err != nil {
			return err // a copy, or the ledger unreachable: the bench sends neither
		}
		event(messages.EventReceived, messages.AuditEvent{Payload: req.RedactedPayload()})
		start := time.Now()
		if err := ref.call(ctx, req, &res); err != nil {
			return err
		}
		event(messages.EventAttempt, messages.AuditEvent{Attempt: 1, Class: "ok", UpstreamRequestID: res.UpstreamRequestID,
			DurationMS: float64(time.Since(start).Microseconds()) / 1000})
		res.CompletedAt = time.Now().UTC()
		entry.State, entry.Result, entry.UpdatedAt = "done", &res, res.CompletedAt
		data, _ = json.Marshal(entry)
		if _, err := kv.Update(ctx, key, data, rev); err != nil {
			return err
		}
		event(messages.EventSucceeded, messages.AuditEvent{Status: res.Status, Attempt: 1, UpstreamRequestID: res.UpstreamRequestID})
	} else {
		res.CompletedAt = time.Now().UTC()
		event(string(res.Status), messages.AuditEvent{Status: res.Status, Code: res.Error.Code, Class: res.Error.Class})
	}
	futures := make([]jetstream.PubAckFuture, 0, len(events)+1)
	for _, ev := range events {
		data, _ := json.Marshal(ev)
		f, err := js.PublishMsgAsync(&nats.Msg{Subject: s.Audit(ev.API, ev.Event, ev.RequestID), Data: data}, jetstream.WithMsgID("event:"+ev.ID))
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	data, _ := json.Marshal(res)
	f, err := js.PublishMsgAsync(&nats.Msg{Subject: s.ResultFor(res.API, res.RequestID), Data: data},
		jetstream.WithMsgID(fmt.Sprintf("result:%s:%d", res.RequestID, res.CompletedAt.UnixNano())))
	if err != nil {
		return err
	}
	futures = append(futures, f)
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
