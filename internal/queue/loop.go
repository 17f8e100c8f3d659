package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Handler handles one message and settles it (ack, nak or term). Its ctx is
// cancelled only when the shutdown grace period is over.
type Handler func(ctx context.Context, msg jetstream.Msg)

// LoopConfig configures Consume.
type LoopConfig struct {
	Concurrency int           // messages handled at once; default 64
	Batch       int           // most messages asked for by one pull; default 16
	AckWait     time.Duration // the consumer's AckWait; InProgress is sent every third of it
	Grace       time.Duration // how long in-flight work may finish after ctx ends; default 30s
	// OnError is told about pull errors (nil = ignored); the loop goes on.
	OnError func(error)
	// Wrap, when set, wraps every message before it is handled and kept
	// alive: tests put faults between the pipeline and the broker with it,
	// the heartbeat included.
	Wrap func(jetstream.Msg) jetstream.Msg
}

// ErrGraceOver is the cause of the work context's cancellation.
var ErrGraceOver = errors.New("queue: shutdown grace period over")

// pullWait is how long one pull waits on the server for messages. It also
// bounds how long the last pull runs on after ctx ends.
const pullWait = time.Second

// Consume pulls from c and runs h on each message, at most Concurrency at a
// time, until ctx ends. Then it stops pulling, hands back messages that were
// pulled but not started (NakWithDelay), lets in-flight work finish within
// Grace, cancels what is left, and returns once every handler has returned.
//
// Each pull asks for as many messages as there are free handler slots, at
// most Batch, and the next pull is sent once it is over, so no more than
// Concurrency messages are held however deep the backlog.
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
	report := func(err error) {
		if cfg.OnError != nil {
			cfg.OnError(err)
		}
	}
	workCtx, cancelWork := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelWork(nil)

	// The grace period starts when ctx ends (or the pull ends), not when
	// the last pull is over.
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
	stopWatching := context.AfterFunc(ctx, startGrace)
	defer stopWatching()

	sem := make(chan struct{}, cfg.Concurrency) // one token per message held
	var wg sync.WaitGroup
	var pullErr error
	for ctx.Err() == nil {
		n := reserve(ctx, sem, cfg.Batch)
		if ctx.Err() != nil {
			release(sem, n)
			break
		}
		// One Fetch at a time, not the Messages iterator of nats.go
		// v1.55.0 (jetstream/pull.go), which can sit 30 s with nothing
		// requested. Its Next sends a pull request only from checkPending,
		// at the top of each pass through its loop (l. 682-683), and
		// checkPending does nothing while fetchInProgress is set (l. 464).
		// pullMessages sets the flag before sending a request and clears
		// it only once PublishRequest has returned (l. 1100-1114). If that
		// goroutine runs on late (under load, descheduled after its
		// write), the answer is already in: Next returns all of it with
		// every checkPending skipped, then blocks in its select (l. 684)
		// with its pending count under the threshold and no request on the
		// server. Nothing comes to run checkPending again until Next's
		// heartbeat timer, 2 x 15 s (l. 670, 1133, 1266), returns
		// ErrNoHeartbeat and zeroes the count (l. 721-727). The Consume
		// callback API re-checks the same way, only after a message
		// (l. 295). A Fetch keeps no such state: it ends when its batch is
		// full, when the server expires it (408), or after its wait plus a
		// second without a message (l. 998-1047).
		batch, err := c.Fetch(n, jetstream.FetchMaxWait(pullWait))
		if err != nil {
			release(sem, n)
			if ctx.Err() != nil {
				break
			}
			if terminal(err) {
				pullErr = fmt.Errorf("queue: the server closed the pull: %w", err)
				break
			}
			report(err)
			pause(ctx)
			continue
		}
		for msg := range batch.Messages() {
			if ctx.Err() != nil {
				// Pulled but not started: hand it back at once.
				_ = msg.NakWithDelay(time.Second)
				continue
			}
			n--
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if cfg.Wrap != nil {
					msg = cfg.Wrap(msg)
				}
				handle(workCtx, msg, h, cfg.AckWait/3)
			}()
		}
		release(sem, n)
		if err := batch.Error(); err != nil {
			if ctx.Err() != nil {
				break
			}
			if terminal(err) || consumerGone(ctx, c, err) {
				pullErr = fmt.Errorf("queue: the server closed the pull: %w", err)
				break
			}
			report(err)
			pause(ctx)
		}
	}
	startGrace()
	wg.Wait()
	close(finished)
	return pullErr
}

// reserve waits for a free handler slot (or for ctx to end: 0), then takes
// the slots that are free right now too, up to max in all.
func reserve(ctx context.Context, sem chan struct{}, max int) int {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < max {
		select {
		case sem <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func release(sem chan struct{}, n int) {
	for range n {
		<-sem
	}
}

// terminal tells whether err means the pull can never go on: the consumer
// was deleted, the server rejects the request, or the connection is closed
// or draining.
func terminal(err error) bool {
	return errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrBadRequest) ||
		errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining)
}

// consumerGone tells, after a pull found no responders, whether that is
// because the consumer no longer exists (deleted while no pull was waiting)
// rather than, say, a leader election.
func consumerGone(ctx context.Context, c jetstream.Consumer, err error) bool {
	if !errors.Is(err, nats.ErrNoResponders) {
		return false
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, ierr := c.Info(ictx)
	return errors.Is(ierr, jetstream.ErrConsumerNotFound)
}

// pause keeps a failing pull from spinning.
func pause(ctx context.Context) {
	t := time.NewTimer(pullWait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
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
