package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Handler handles one message and settles it (ack, nak or term). Its ctx is
// cancelled only when the shutdown grace period is over.
type Handler func(ctx context.Context, msg jetstream.Msg)

// LoopConfig configures Consume.
type LoopConfig struct {
	Concurrency int           // messages handled at once; default 64
	Batch       int           // messages buffered by the pull; default 16
	AckWait     time.Duration // the consumer's AckWait; InProgress is sent every third of it
	Grace       time.Duration // how long in-flight work may finish after ctx ends; default 30s
	// OnError is told about pull errors (nil = ignored); the loop goes on.
	OnError func(error)
}

// ErrGraceOver is the cause of the work context's cancellation.
var ErrGraceOver = errors.New("queue: shutdown grace period over")

// Consume pulls from c and runs h on each message, at most Concurrency at a
// time, until ctx ends. Then it stops pulling, hands back messages that were
// pulled but not started (NakWithDelay), lets in-flight work finish within
// Grace, cancels what is left, and returns once every handler has returned.
func Consume(ctx context.Context, c jetstream.Consumer, h Handler, cfg LoopConfig) error {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 64
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 16
	}
	if cfg.Batch > cfg.Concurrency {
		cfg.Batch = cfg.Concurrency
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = time.Minute
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	it, err := c.Messages(jetstream.PullMaxMessages(cfg.Batch))
	if err != nil {
		return err
	}
	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(nil)

	// The grace period starts when ctx ends (or the pull ends), not when
	// the iterator has finished draining, which can take a while.
	finished := make(chan struct{}) // every handler has returned
	var graceOnce sync.Once
	startGrace := func() {
		graceOnce.Do(func() {
			go func() {
				timer := time.NewTimer(cfg.Grace)
				defer timer.Stop()
				select {
				case <-timer.C:
					cancelWork(ErrGraceOver)
				case <-finished:
				}
			}()
		})
	}
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			startGrace()
			it.Drain() // no more pulls; buffered messages still come out of Next
		case <-stopped:
		}
	}()

	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	var pullErr error
	for {
		msg, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if ctx.Err() == nil {
					// The server ended the pull (the consumer was deleted,
					// …): exit with an error so a supervisor restarts us.
					pullErr = fmt.Errorf("queue: the server closed the pull: %w", err)
				}
				break
			}
			if cfg.OnError != nil {
				cfg.OnError(err)
			}
			continue
		}
		if ctx.Err() != nil {
			// Pulled but not started: hand it back at once.
			_ = msg.NakWithDelay(time.Second)
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			_ = msg.NakWithDelay(time.Second)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			handle(workCtx, msg, h, cfg.AckWait/3)
		}()
	}
	close(stopped)
	it.Stop()
	startGrace()
	wg.Wait()
	close(finished)
	return pullErr
}

// handle runs h and keeps the ack deadline alive meanwhile.
func handle(ctx context.Context, msg jetstream.Msg, h Handler, every time.Duration) {
	finished := make(chan struct{})
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-finished:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	defer close(finished)
	h(ctx, msg)
}
