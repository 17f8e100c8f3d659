package queue_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/messages"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
)

// lateWriteConn hands every write to the socket at once, but returns late
// from a write that carries a pull request: the server already has the
// request (and may have answered it) while the goroutine that sent it has
// not yet run on. Under load that is what a goroutine descheduled just
// after its write syscall looks like; here it happens on every pull.
type lateWriteConn struct {
	net.Conn
	delay time.Duration
}

func (c lateWriteConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if bytes.Contains(b, []byte(".CONSUMER.MSG.NEXT.")) {
		time.Sleep(c.delay)
	}
	return n, err
}

type lateDialer struct{ delay time.Duration }

func (d lateDialer) Dial(network, address string) (net.Conn, error) {
	c, err := net.Dial(network, address)
	if err != nil {
		return nil, err
	}
	return lateWriteConn{Conn: c, delay: d.delay}, nil
}

// TestConsumeKeepsPullingWhenThePullRequestReturnsLate drains a deep
// backlog at concurrency 512 and batch 16 through a connection on which
// the goroutine that sends a pull request runs on only after the answer
// has come back. The pull must never go idle while messages are pending
// (the old loop, on the Messages iterator, sat idle until the iterator's
// 30 s missing-heartbeat timer fired).
func TestConsumeKeepsPullingWhenThePullRequestReturnsLate(t *testing.T) {
	const (
		n       = 2000
		maxIdle = 2 * time.Second
	)
	srv := natstest.Server(t)
	js, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	subj := messages.Subjects{Prefix: "filing"}
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{Subjects: subj}); err != nil {
		t.Fatal(err)
	}
	if _, err := queue.EnsureConsumer(ctx, js, queue.ConsumerConfig{Subjects: subj, MaxAckPending: 1024}); err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := js.PublishAsync(subj.Request(messages.APIVMSAddQualification), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("publishing the backlog timed out")
	}

	// The consumer's own connection: every write goes straight to the
	// socket (no buffering), so the pull request is written by the
	// goroutine that sends it, and that write returns late.
	nc, err := nats.Connect(srv.ClientURL(), nats.WriteBufferSize(1), nats.SetCustomDialer(lateDialer{delay: 20 * time.Millisecond}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	cjs, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := cjs.Consumer(ctx, queue.StreamNames(subj).Requests, "qualfile")
	if err != nil {
		t.Fatal(err)
	}

	var (
		mu        sync.Mutex
		lastStart = time.Now()
		maxGap    time.Duration
		handled   atomic.Int64
	)
	runCtx, cancel := context.WithCancel(ctx)
	var consumeErr error
	done := make(chan struct{})
	stop := func() error {
		cancel()
		select {
		case <-done:
			return consumeErr
		case <-time.After(10 * time.Second):
			return errors.New("Consume did not return within 10s after its context ended")
		}
	}
	defer func() { _ = stop() }()
	go func() {
		defer close(done)
		consumeErr = queue.Consume(runCtx, cons, func(_ context.Context, m jetstream.Msg) {
			now := time.Now()
			mu.Lock()
			maxGap = max(maxGap, now.Sub(lastStart))
			lastStart = now
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
			_ = m.Ack()
			handled.Add(1)
		}, queue.LoopConfig{Concurrency: 512, Batch: 16, Grace: time.Second,
			OnError: func(err error) { t.Logf("pull error: %v", err) }})
	}()

	start := time.Now()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for handled.Load() < n {
		<-tick.C
		mu.Lock()
		idle := time.Since(lastStart)
		mu.Unlock()
		if h := handled.Load(); h < n && idle > maxIdle {
			t.Fatalf("no handler started for %s with %d of %d messages left (%d handled in %s)",
				idle.Round(time.Millisecond), n-h, n, h, time.Since(start).Round(time.Millisecond))
		}
	}
	elapsed := time.Since(start)
	if err := stop(); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d messages in %s, longest gap between handler starts %s", n, elapsed.Round(time.Millisecond), maxGap.Round(time.Millisecond))
	if maxGap > maxIdle {
		t.Fatalf("longest gap between handler starts %s, want at most %s", maxGap, maxIdle)
	}
}
