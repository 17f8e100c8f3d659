package queue_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
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

// consumeSetup makes the streams and the durable consumer and queues n
// requests.
func consumeSetup(t *testing.T, n int) (jetstream.JetStream, jetstream.Consumer) {
	t.Helper()
	js, _, _ := natstest.JetStream(t)
	ctx := context.Background()
	subj := messages.Subjects{Prefix: "filing"}
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{Subjects: subj}); err != nil {
		t.Fatal(err)
	}
	cons, err := queue.EnsureConsumer(ctx, js, queue.ConsumerConfig{Subjects: subj})
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := js.Publish(ctx, subj.Request(messages.APIVMSAddQualification), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	return js, cons
}

// TestConsumeShutdownGrace: when ctx ends, in-flight handlers get Grace to
// finish, then their context is cancelled with ErrGraceOver, and Consume
// returns once they have returned; nothing more is pulled.
func TestConsumeShutdownGrace(t *testing.T) {
	_, cons := consumeSetup(t, 5)
	const grace = 500 * time.Millisecond
	started := make(chan struct{}, 5)
	causes := make(chan error, 5)
	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- queue.Consume(runCtx, cons, func(ctx context.Context, m jetstream.Msg) {
			started <- struct{}{}
			<-ctx.Done()
			causes <- context.Cause(ctx)
			_ = m.NakWithDelay(time.Second)
		}, queue.LoopConfig{Concurrency: 2, Batch: 2, Grace: grace})
	}()
	for range 2 {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handlers did not start")
		}
	}
	cancel()
	stopped := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Consume: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return")
	}
	if took := time.Since(stopped); took < grace {
		t.Fatalf("Consume returned %s after ctx ended, before the %s grace period", took, grace)
	}
	for range 2 {
		if c := <-causes; !errors.Is(c, queue.ErrGraceOver) {
			t.Fatalf("handler context cause %v, want ErrGraceOver", c)
		}
	}
	if len(started) != 0 {
		t.Fatalf("%d more handlers started after ctx ended", len(started))
	}
}

// TestConsumeEndsWhenTheConsumerIsDeleted: the server ending the pull is an
// error, so that a supervisor restarts the process; whether a pull was
// waiting on the server when the consumer went (409 Consumer Deleted) or
// the next pull finds no consumer (503 No Responders).
func TestConsumeEndsWhenTheConsumerIsDeleted(t *testing.T) {
	stream := queue.StreamNames(messages.Subjects{Prefix: "filing"}).Requests
	for _, tc := range []struct {
		name    string
		backlog int
	}{{"while a pull waits", 0}, {"between pulls", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			js, cons := consumeSetup(t, tc.backlog)
			deleted := make(chan struct{})
			deleteConsumer := func() {
				if err := js.DeleteConsumer(context.Background(), stream, "qualfile"); err != nil {
					t.Error(err)
				}
				close(deleted)
			}
			done := make(chan error, 1)
			go func() {
				// With the only slot busy no pull waits on the server.
				done <- queue.Consume(context.Background(), cons, func(_ context.Context, m jetstream.Msg) {
					deleteConsumer()
					_ = m.Ack()
				}, queue.LoopConfig{Concurrency: 1, Grace: time.Second})
			}()
			if tc.backlog == 0 {
				time.Sleep(100 * time.Millisecond) // a pull is waiting on the server
				deleteConsumer()
			}
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "the server closed the pull") {
					t.Fatalf("Consume returned %v, want the server closing the pull", err)
				}
				t.Logf("Consume: %v", err)
			case <-time.After(10 * time.Second):
				t.Fatal("Consume did not return after the consumer was deleted")
			}
			<-deleted
		})
	}
}
