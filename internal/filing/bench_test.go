package filing_test

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/messages"
)

// BenchmarkBacklog drains a backlog of b.N SMS filings (each carrying an
// inline file) through the whole pipeline: embedded NATS, ledger, the
// sandbox over HTTP. It reports requests per second, the most messages the
// consumer held at once (at most MaxAckPending, 64, however deep the
// backlog: the bound on the consumer's memory) and the process's peak heap.
// The heap includes the in-process NATS server and the sandbox, which keep
// every message and call they have seen, so it grows with the backlog for
// reasons outside the consumer:
//
//	go test -run XXX -bench Backlog -benchtime 2000x ./internal/filing/
//	go test -run XXX -bench Backlog -benchtime 20000x ./internal/filing/
//
// Results of a run are kept in bench/results.txt.
func BenchmarkBacklog(b *testing.B) {
	h := newHarness(b, harnessOpts{})
	ctx := context.Background()
	subject := h.subjects.Request(messages.APISMSApplySignatureIdent)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for i := range b.N {
		id := fmt.Sprintf("bench-%07d", i)
		data := example(b, messages.APISMSApplySignatureIdent, id)
		m := nats.NewMsg(subject)
		m.Data = data
		f, err := h.js.PublishMsgAsync(m, jetstream.WithMsgID(id))
		if err != nil {
			b.Fatal(err)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	var peak, maxPending atomic.Uint64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak.Load() {
					peak.Store(ms.HeapInuse)
				}
				if info, err := h.Durable.Info(ctx); err == nil && uint64(info.NumAckPending) > maxPending.Load() {
					maxPending.Store(uint64(info.NumAckPending))
				}
			}
		}
	}()
	b.ResetTimer()
	start := time.Now()
	stop := h.run()
	for h.sb.CountCalls(messages.APISMSApplySignatureIdent) < b.N {
		time.Sleep(5 * time.Millisecond)
	}
	// Every result stored, not only every call made.
	s, _ := h.js.Stream(ctx, h.Streams.Results)
	for {
		info, err := s.Info(ctx)
		if err == nil && info.State.Msgs >= uint64(b.N) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	stop()
	close(stopSampling)
	<-sampled
	if maxPending.Load() > 64 {
		b.Errorf("%d messages held at once, more than MaxAckPending 64", maxPending.Load())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(before.HeapInuse)/(1<<20), "heap-before-MiB")
	b.ReportMetric(float64(maxPending.Load()), "max-held-msgs")
}
