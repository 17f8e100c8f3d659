package integration

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/guard"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// Protecting the vendors, on a real server with two replicas.

// TestVendorOutageIsNotHammered: requests arrive steadily at 10/s; the
// vendor answers every call SystemError / 1999 for 20 s. With the
// breakers (production defaults: open after 5 failures in a row, for
// 15 s) the vendor sees fewer calls per second during the outage than
// before it, and after it every request succeeds within a minute.
func TestVendorOutageIsNotHammered(t *testing.T) {
	requireDocker(t)
	srv := startServer(t)
	sb := filingtest.StartSandbox(t)
	var replicas []*filingtest.Pipeline
	for _, name := range []string{"replica-a", "replica-b"} {
		nc := connect(t, name, srv.url)
		p := newPipeline(t, filingtest.Options{NC: nc.Conn, Owner: name, Sandbox: sb, MaxDeliver: 5, Guard: &guard.Config{}})
		replicas = append(replicas, p)
		stop := p.Run()
		t.Cleanup(stop)
	}
	p := replicas[0]

	const (
		rate   = 10
		before = 10 * time.Second
		outage = 20 * time.Second
		after  = 5 * time.Second
	)
	start := time.Now()
	var ids []string
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for i := 0; time.Since(start) < before+outage+after; i++ {
			<-tick.C
			api := messages.APIVMSAddQualification
			if i%2 == 1 {
				api = messages.APISMSApplySignatureIdent
			}
			id := fmt.Sprintf("outage-%04d", i)
			p.Publish(api, id, filingtest.Example(t, api, id))
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
	}()
	time.Sleep(before)
	outageStart := time.Now()
	faults := []int{sb.Inject(sandbox.Fault{API: messages.APIVMSAddQualification, Code: "SystemError"}),
		sb.Inject(sandbox.Fault{API: messages.APISMSApplySignatureIdent, Code: "1999"})}
	time.Sleep(outage)
	for _, f := range faults {
		sb.RemoveFault(f)
	}
	outageEnd := time.Now()
	<-done

	calls := func(from, to time.Time) int {
		n := 0
		for _, c := range sb.Calls() {
			if (c.API == messages.APIVMSAddQualification || c.API == messages.APISMSApplySignatureIdent) && !c.Time.Before(from) && c.Time.Before(to) {
				n++
			}
		}
		return n
	}
	beforeRate := float64(calls(start, outageStart)) / outageStart.Sub(start).Seconds()
	duringRate := float64(calls(outageStart, outageEnd)) / outageEnd.Sub(outageStart).Seconds()
	t.Logf("vendor calls/s: %.1f before the outage, %.1f during it (%d calls in %s)", beforeRate, duringRate,
		calls(outageStart, outageEnd), outageEnd.Sub(outageStart).Round(time.Millisecond))
	if duringRate > beforeRate {
		t.Errorf("the vendor saw %.1f calls/s during the outage, more than the %.1f/s before it", duringRate, beforeRate)
	}

	mu.Lock()
	want := append([]string(nil), ids...)
	mu.Unlock()
	deadline := outageEnd.Add(time.Minute)
	for {
		results := p.Results()
		ok, bad := 0, []string{}
		for _, id := range want {
			rs := results[id]
			switch {
			case len(rs) == 0:
			case rs[len(rs)-1].Status == messages.StatusSucceeded:
				ok++
			default:
				bad = append(bad, fmt.Sprintf("%s: %s %+v", id, rs[len(rs)-1].Status, rs[len(rs)-1].Error))
			}
		}
		if len(bad) > 0 {
			t.Fatalf("%d requests did not succeed: %v", len(bad), bad[:min(len(bad), 5)])
		}
		if ok == len(want) {
			t.Logf("all %d requests succeeded %s after the outage ended", ok, time.Since(outageEnd).Round(time.Second))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests succeeded within a minute of the outage's end", ok, len(want))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if dead := p.Dead(); len(dead) != 0 {
		t.Errorf("%d dead letters", len(dead))
	}
}

// TestRateLimitHoldsAcrossReplicas: with a limit of 5 calls/s per vendor
// account shared by two replicas (slots in the prefix's KV bucket), 40
// requests published at once reach the vendor at no more than 5 calls in
// any one-second window. A slot is 1/limit plus 5 %, and its call starts
// when it begins; the stated tolerance is one call, for a scheduling or
// network delay between two calls longer than the margin (50 ms over five
// slots at 5/s).
func TestRateLimitHoldsAcrossReplicas(t *testing.T) {
	requireDocker(t)
	srv := startServer(t)
	sb := filingtest.StartSandbox(t)
	const limit, n = 5, 40
	var replicas []*filingtest.Pipeline
	for _, name := range []string{"replica-a", "replica-b"} {
		nc := connect(t, name, srv.url)
		p := newPipeline(t, filingtest.Options{NC: nc.Conn, Owner: name, Sandbox: sb, Guard: &guard.Config{Rate: limit}})
		replicas = append(replicas, p)
		stop := p.Run()
		t.Cleanup(stop)
	}
	p := replicas[0]
	for i := range n {
		id := fmt.Sprintf("rate-%03d", i)
		p.Publish(messages.APIVMSAddQualification, id, filingtest.Example(t, messages.APIVMSAddQualification, id))
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ok := 0
		for _, rs := range p.Results() {
			if rs[len(rs)-1].Status == messages.StatusSucceeded {
				ok++
			}
		}
		if ok == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d succeeded", ok, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var times []time.Time
	for _, c := range sb.Calls() {
		if c.API == messages.APIVMSAddQualification {
			times = append(times, c.Time)
		}
	}
	most := mostInWindow(times, time.Second)
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	span := times[len(times)-1].Sub(times[0])
	t.Logf("%d calls over %s from two replicas at a shared limit of %d/s: at most %d in any one-second window", len(times), span.Round(time.Millisecond), limit, most)
	if len(times) != n {
		t.Errorf("the vendor saw %d calls, want %d", len(times), n)
	}
	if most > limit+1 {
		t.Errorf("%d calls in one second, limit %d (tolerance one)", most, limit)
	}
	if min := time.Duration(n-limit-1) * time.Second / limit; span < min {
		t.Errorf("%d calls in %s: faster than %d/s allows (%s)", n, span, limit, min)
	}
	kv, err := p.JS.KeyValue(context.Background(), p.Buckets.Rate)
	if err != nil {
		t.Errorf("the rate bucket %s: %v", p.Buckets.Rate, err)
	} else if _, err := kv.Status(context.Background()); err != nil {
		t.Errorf("the rate bucket %s: %v", p.Buckets.Rate, err)
	}
}

// mostInWindow is the most times within any window of d.
func mostInWindow(ts []time.Time, d time.Duration) int {
	ts = append([]time.Time(nil), ts...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	most, j := 0, 0
	for i := range ts {
		for ts[i].Sub(ts[j]) >= d {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}
