package main

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// plainRetries is how often the plain pipeline retries a failed upstream
// call in process, as Watermill's Retry middleware does for its pipeline.
const plainRetries = 3

// startPlain runs the hand-written nats.go reference: a durable pull
// consumer (jetstream.Consume, at most concurrency messages buffered)
// feeding concurrency handlers; each decodes and validates the request,
// POSTs it to the upstream, publishes the result to the results stream and
// waits for the stream's ack, then acks the request with a double ack (the
// ack qualfile and Watermill's JetStream subscriber also wait for).
func startPlain(ctx context.Context, nc *nats.Conn, w workerConfig) (func(), error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, w.streams().Requests, jetstream.ConsumerConfig{
		Durable: "plain", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
		MaxAckPending: max(1024, 2*w.concurrency),
	})
	if err != nil {
		return nil, err
	}
	ref := newReference(w.prefix, w.upstream, w.concurrency)
	slots := make(chan struct{}, w.concurrency)
	var handlers sync.WaitGroup
	handle := func(m jetstream.Msg) {
		defer func() { <-slots; handlers.Done() }()
		var (
			subject string
			result  []byte
			err     error
		)
		for attempt := 0; ; attempt++ {
			subject, result, err = ref.file(ctx, m.Subject(), m.Data())
			if err == nil || attempt == plainRetries || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Duration(100<<attempt) * time.Millisecond)
		}
		if err != nil {
			_ = m.NakWithDelay(time.Second)
			return
		}
		if _, err := js.Publish(ctx, subject, result); err != nil {
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
