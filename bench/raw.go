package main

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startRaw runs the floor: a durable pull consumer whose handler does no
// work but ack the message (a plain ack, not awaited). So that the driver
// can count and time it like the others, it then publishes a tiny core NATS
// notice with the request id (from the Nats-Msg-Id header; the body is not
// read) on the result subject, where no stream stores it.
func startRaw(ctx context.Context, nc *nats.Conn, w workerConfig) (func(), error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, w.streams().Requests, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Minute,
	})
	if err != nil {
		return nil, err
	}
	subjects := w.subjects()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		api, _ := subjects.APIFromRequestSubject(m.Subject())
		id := m.Headers().Get(nats.MsgIdHdr)
		_ = nc.Publish(subjects.Result(api), []byte(`{"request_id":"`+id+`","status":"acked"}`))
	})
	if err != nil {
		return nil, err
	}
	return cc.Stop, nil
}
