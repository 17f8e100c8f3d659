package queue_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

func TestEnsureStreamsIdempotent(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx := context.Background()
	cfg := queue.StreamsConfig{Subjects: messages.Subjects{Prefix: "filing"}}
	done, err := queue.EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"FILING_REQUESTS", "FILING_RESULTS", "FILING_AUDIT", "FILING_DEAD"} {
		if done[name] != "created" {
			t.Fatalf("first run: %s %q", name, done[name])
		}
	}
	if done, err = queue.EnsureStreams(ctx, js, cfg); err != nil || done["FILING_REQUESTS"] != "unchanged" {
		t.Fatalf("second run: %v %v", done, err)
	}
	cfg.AuditMaxAge = 24 * time.Hour
	if done, err = queue.EnsureStreams(ctx, js, cfg); err != nil || done["FILING_AUDIT"] != "updated: max_age 2160h0m0s → 24h0m0s" {
		t.Fatalf("changed max age: %v %v", done, err)
	}
	s, err := js.Stream(ctx, "FILING_REQUESTS")
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if c.Retention != jetstream.WorkQueuePolicy || c.Storage != jetstream.FileStorage || c.Duplicates != 24*time.Hour {
		t.Fatalf("requests stream config %+v", c)
	}
}

// TestEnsureStreamsRestoresWhatCouldEvict: a results stream reconfigured
// to keep 10 messages (2 per subject), discarding old ones, would silently
// evict results; EnsureStreams makes it refuse instead, says what it
// changed, and no stored result is evicted afterwards.
func TestEnsureStreamsRestoresWhatCouldEvict(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx := context.Background()
	cfg := queue.StreamsConfig{Subjects: messages.Subjects{Prefix: "filing"}}
	if _, err := queue.EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, "FILING_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	c.MaxMsgs, c.MaxMsgsPerSubject, c.Discard = 10, 2, jetstream.DiscardOld
	if _, err := js.UpdateStream(ctx, c); err != nil {
		t.Fatal(err)
	}
	done, err := queue.EnsureStreams(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"max_msgs_per_subject 2 → -1", "discard DiscardOld → DiscardNew"} {
		if !strings.Contains(done["FILING_RESULTS"], want) {
			t.Errorf("results stream %q, want it to say %q", done["FILING_RESULTS"], want)
		}
	}
	for i := range 11 {
		_, err := js.Publish(ctx, "filing.result.vms.add_qualification.r-1", []byte(strconv.Itoa(i)))
		if (err != nil) != (i == 10) {
			t.Fatalf("publish %d: %v; want the first 10 stored, the 11th refused", i, err)
		}
	}
	m, err := s.GetMsg(ctx, 1)
	if info, ierr := s.Info(ctx); err != nil || ierr != nil || info.State.Msgs != 10 || string(m.Data) != "0" {
		t.Fatalf("%v messages kept, the first %v (%v): want all 10 stored, the first still there", info.State.Msgs, m, err)
	}
}

func TestEnsureStreamsConflict(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILING_REQUESTS", Subjects: []string{"filing.request.>"}, Retention: jetstream.LimitsPolicy, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatal(err)
	}
	_, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{Subjects: messages.Subjects{Prefix: "filing"}})
	var ce *queue.ConflictError
	if !errors.Is(err, queue.ErrStreamConflict) || !errors.As(err, &ce) || ce.Stream != "FILING_REQUESTS" {
		t.Fatalf("err = %v, want a conflict on FILING_REQUESTS", err)
	}
	if !strings.Contains(err.Error(), "retention") || !strings.Contains(err.Error(), "storage") {
		t.Fatalf("error %q should name retention and storage", err)
	}
	s, _ := js.Stream(ctx, "FILING_REQUESTS")
	if s.CachedInfo().Config.Retention != jetstream.LimitsPolicy {
		t.Fatal("the conflicting stream was changed")
	}
}

func TestStreamsConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     queue.StreamsConfig
		wantErr error
	}{
		{"zero", queue.StreamsConfig{}, nil},
		{"negative replicas take the default", queue.StreamsConfig{Replicas: -1}, nil},
		{"explicit", queue.StreamsConfig{Replicas: 5, DuplicateWindow: time.Hour, AuditMaxAge: time.Hour, ResultsMaxAge: time.Hour, DeadMaxAge: time.Hour}, nil},
		{"replicas 6", queue.StreamsConfig{Replicas: 6}, queue.ErrInvalidConfig},
		{"negative results max age", queue.StreamsConfig{ResultsMaxAge: -time.Hour}, queue.ErrInvalidConfig},
		{"negative dead max age", queue.StreamsConfig{DeadMaxAge: -time.Hour}, queue.ErrInvalidConfig},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: Validate() = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	// EnsureStreams checks it before it touches a stream.
	js, _, _ := natstest.JetStream(t)
	ctx := context.Background()
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{DeadMaxAge: -time.Hour}); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Fatalf("EnsureStreams = %v, want ErrInvalidConfig", err)
	}
	if _, err := js.Stream(ctx, "FILING_REQUESTS"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("EnsureStreams made a stream from a config it rejects: %v", err)
	}
}

func TestStreamNamesFollowPrefix(t *testing.T) {
	n := queue.StreamNames(messages.Subjects{Prefix: "acme.filing"})
	if n.Requests != "ACME_FILING_REQUESTS" || n.Dead != "ACME_FILING_DEAD" {
		t.Fatalf("%+v", n)
	}
}

func TestConsumeBoundsConcurrency(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx := context.Background()
	subj := messages.Subjects{Prefix: "filing"}
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{Subjects: subj}); err != nil {
		t.Fatal(err)
	}
	cons, err := queue.EnsureConsumer(ctx, js, queue.ConsumerConfig{Subjects: subj, MaxAckPending: 4})
	if err != nil {
		t.Fatal(err)
	}
	for range 40 {
		if _, err := js.Publish(ctx, subj.Request(messages.APIVMSAddQualification), []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	var (
		inFlight, peak, handled = make(chan struct{}, 100), 0, 0
		done                    = make(chan struct{})
	)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan int, 100)
	go func() {
		_ = queue.Consume(runCtx, cons, func(_ context.Context, m jetstream.Msg) {
			inFlight <- struct{}{}
			results <- len(inFlight)
			time.Sleep(10 * time.Millisecond)
			<-inFlight
			_ = m.Ack()
		}, queue.LoopConfig{Concurrency: 4, Batch: 2, Grace: time.Second})
		close(done)
	}()
	for handled < 40 {
		select {
		case n := <-results:
			handled++
			peak = max(peak, n)
		case <-time.After(10 * time.Second):
			t.Fatalf("handled %d of 40", handled)
		}
	}
	cancel()
	<-done
	if peak > 4 || peak < 2 {
		t.Fatalf("peak concurrency %d, want 2..4", peak)
	}
}
