package main

import (
	"context"
	"errors"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
)

// startWatermill runs the Watermill pipeline: a Router with the Retry
// middleware, one handler that does the reference work and returns the
// result, which the Router publishes with a JetStream publisher (awaited)
// before it acks the request.
//
// The subscriber is watermill-nats's pkg/nats with JetStream enabled, not
// pkg/jetstream. pkg/nats is a durable JetStream push subscriber: a durable
// consumer with a deliver group, SubscribersCount queue subscriptions on
// it, each holding one message until the handler acks it, so
// SubscribersCount is the concurrency (64, like the others), and the ack is
// awaited (AckSync). pkg/jetstream is a pull subscriber, but v2.1.3 marks it
// beta, recommends pkg/nats for production, and handles one message at a
// time per subscription (its Consume callback waits for the ack), so it
// would need 64 handlers to reach the same concurrency.
func startWatermill(ctx context.Context, nc *nats.Conn, w workerConfig) (func(), error) {
	logger := watermill.NopLogger{}
	subjects := w.subjects()
	requestTopic, resultTopic := subjects.Request(benchAPI), subjects.Result(benchAPI)
	jsConfig := wmnats.JetStreamConfig{
		SubscribeOptions: []nats.SubOpt{
			nats.DeliverAll(), nats.AckExplicit(), nats.ManualAck(), nats.AckWait(time.Minute),
			// Twice the subscriptions, not the server's default of 1,000:
			// the consumer starts pushing as soon as the first of the
			// SubscribersCount subscriptions exists, and on a backlog that
			// one would take all 1,000 and handle them one at a time
			// after the others have run dry (a 5,000-message drain took
			// 6 s instead of 0.8 s in a test of nats.go alone).
			nats.MaxAckPending(2 * w.concurrency),
		},
		DurablePrefix: "watermill",
	}
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      &wmnats.NATSMarshaler{},
		SubscribersCount: w.concurrency,
		AckWaitTimeout:   time.Minute,
		CloseTimeout:     5 * time.Second,
		QueueGroupPrefix: "watermill",
		JetStream:        jsConfig,
	}, logger)
	if err != nil {
		return nil, err
	}
	pub, err := wmnats.NewPublisherWithNatsConn(nc, wmnats.PublisherPublishConfig{
		Marshaler:         &wmnats.NATSMarshaler{},
		SubjectCalculator: wmnats.DefaultSubjectCalculator,
		JetStream:         wmnats.JetStreamConfig{},
	}, logger)
	if err != nil {
		return nil, err
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 5 * time.Second}, logger)
	if err != nil {
		return nil, err
	}
	router.AddMiddleware(middleware.Retry{
		MaxRetries:      plainRetries,
		InitialInterval: 100 * time.Millisecond,
		Multiplier:      2,
		MaxInterval:     time.Second,
		Logger:          logger,
	}.Middleware)
	ref := newReference(w.prefix, w.upstream, w.concurrency)
	router.AddHandler("file", requestTopic, sub, resultTopic, pub, func(msg *message.Message) ([]*message.Message, error) {
		_, result, err := ref.file(msg.Context(), requestTopic, msg.Payload)
		if err != nil {
			return nil, err
		}
		return []*message.Message{message.NewMessage(watermill.NewUUID(), result)}, nil
	})
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	ran := make(chan error, 1)
	go func() { ran <- router.Run(runCtx) }()
	select {
	case <-router.Running():
	case err := <-ran:
		cancel()
		return nil, errors.Join(errors.New("watermill router stopped at start"), err)
	case <-time.After(30 * time.Second):
		cancel()
		_ = router.Close()
		return nil, errors.New("watermill router not running within 30 s")
	}
	return func() {
		_ = router.Close()
		cancel()
		<-ran
	}, nil
}
