package operator_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// BenchmarkTrailAmongAMillionEvents fills the audit stream with
// QUALFILE_TRAIL_EVENTS (default 1,000,000) events, three per request id,
// and times the trail of one request: it is found by subject, so it does
// not grow with the stream.
//
//	go test -run XXX -bench TrailAmong -benchtime 20x ./internal/operator/
//
// The last figures are in bench/results/trail.txt.
func BenchmarkTrailAmongAMillionEvents(b *testing.B) {
	total := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("QUALFILE_TRAIL_EVENTS")); err == nil && v > 0 {
		total = v
	}
	js, _, _ := natstest.JetStream(b)
	ctx := context.Background()
	subjects := messages.Subjects{Prefix: "filing"}
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{Subjects: subjects}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	kinds := []string{messages.EventReceived, messages.EventAttempt, messages.EventSucceeded}
	for i := range total {
		id := fmt.Sprintf("req-%07d", i/len(kinds))
		ev := messages.AuditEvent{SchemaVersion: messages.SchemaVersion, RequestID: id, API: messages.APIVMSAddQualification,
			Account: "default", Event: kinds[i%len(kinds)], Time: time.Now().UTC(), Delivery: 1}
		data, _ := json.Marshal(ev)
		m := nats.NewMsg(subjects.Audit(ev.API, ev.Event, id))
		m.Data = data
		if _, err := js.PublishMsgAsync(m); err != nil {
			b.Fatal(err)
		}
		if i%10000 == 9999 {
			select {
			case <-js.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("publishing the audit events timed out")
			}
		}
	}
	<-js.PublishAsyncComplete()
	info, err := js.Stream(ctx, queue.StreamNames(subjects).Audit)
	if err != nil {
		b.Fatal(err)
	}
	si, _ := info.Info(ctx)
	b.Logf("%d audit events stored in %s", si.State.Msgs, time.Since(start).Round(time.Second))
	want := fmt.Sprintf("req-%07d", total/len(kinds)/2) // one in the middle
	b.ResetTimer()
	for range b.N {
		t, err := operator.ReadTrail(ctx, js, nil, nil, subjects, want)
		if err != nil {
			b.Fatal(err)
		}
		if len(t.Events) != len(kinds) {
			b.Fatalf("%d events for %s, want %d", len(t.Events), want, len(kinds))
		}
	}
	b.ReportMetric(float64(si.State.Msgs), "events-in-stream")
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/trail")
}
