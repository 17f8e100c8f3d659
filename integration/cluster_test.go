package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/messages"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/internal/tokenkv"
)

// TestClusterReplicatedStreams runs two consumer replicas against a
// three-node JetStream cluster with every stream and bucket replicated three
// times, and stops the node leading the request stream in the middle of 200
// requests (then starts it again): every request ends with exactly one
// succeeded result, no qualification is filed twice, and the replicas share
// one Douyin token.
func TestClusterReplicatedStreams(t *testing.T) {
	const (
		total      = 200
		replicas   = 3
		maxDeliver = 30 // node failover costs deliveries; none may run out
	)
	nodes := startCluster(t, 3)
	byName := map[string]*natsNode{}
	for _, n := range nodes {
		byName[n.name] = n
	}
	ncA := connect(t, "replica-a", urls(nodes[0], nodes[1], nodes[2])...)
	ncB := connect(t, "replica-b", urls(nodes[1], nodes[2], nodes[0])...)
	waitClusterReady(t, newJetStream(t, ncA.Conn), replicas, 60*time.Second)

	sb := startSandbox(t)
	// Every call takes a little while, so that the node stops mid-run.
	sb.Inject(sandbox.Fault{Latency: 20 * time.Millisecond})
	a := newPipeline(t, pipelineOpts{nc: ncA.Conn, replicas: replicas, maxDeliver: maxDeliver, owner: "replica-a", sb: sb})
	b := newPipeline(t, pipelineOpts{nc: ncB.Conn, replicas: replicas, maxDeliver: maxDeliver, owner: "replica-b", sb: sb})
	checkReplicas(t, a.js, replicas, a.streams.Requests, a.streams.Results, a.streams.Audit, a.streams.Dead,
		"KV_"+ledger.DefaultBucket, "KV_"+tokenkv.DefaultBucket, "KV_"+tokenkv.DefaultLockBucket)

	type request struct {
		api messages.API
		id  string
	}
	reqs := make([]request, total)
	wantVMS := 0
	for i := range reqs {
		if i%4 == 3 {
			reqs[i] = request{messages.APIDouyinGetClassAuth, fmt.Sprintf("cluster-dy-%03d", i)}
		} else {
			reqs[i] = request{messages.APIVMSAddQualification, fmt.Sprintf("cluster-vms-%03d", i)}
			wantVMS++
		}
	}
	publish := func(p *pipeline, rs []request) {
		for _, r := range rs {
			p.publish(r.api, r.id, example(t, r.api, r.id))
		}
	}

	start := time.Now()
	publish(a, reqs[:total/2])
	a.run()
	b.run()
	waitFor(t, 60*time.Second, "40 results before the node stop", func() bool { return a.resultCount() >= 40 })

	// Stop the node leading the request stream (and so, most likely, the
	// shared consumer): the hardest node to lose.
	victim := nodes[0]
	if info := streamInfo(t, a.js, a.streams.Requests); info.Cluster != nil && byName[info.Cluster.Leader] != nil {
		victim = byName[info.Cluster.Leader]
	}
	atStop := a.resultCount()
	t.Logf("stopping %s (request stream leader) after %d results, %s in", victim.name, atStop, time.Since(start).Round(time.Millisecond))
	victim.stop(t)
	stoppedAt := time.Now()

	// Upstream keeps publishing while the node is down.
	publish(b, reqs[total/2:])
	progressed := waitUntil(30*time.Second, func() bool { return b.resultCount() >= total*3/4 })
	duringOutage := b.resultCount()
	t.Logf("%d results with %s down for %s (target reached: %v)", duringOutage, victim.name, time.Since(stoppedAt).Round(time.Millisecond), progressed)
	if duringOutage <= atStop {
		t.Errorf("no progress with one of three nodes down: %d results before, %d after", atStop, duringOutage)
	}

	victim.start(t)
	t.Logf("%s started again after %s down", victim.name, time.Since(stoppedAt).Round(time.Millisecond))
	a.waitResults(total, 90*time.Second)
	// Let late redeliveries (lost acks) settle: the request stream is a
	// work queue, empty once every request is acked or terminated.
	waitFor(t, 60*time.Second, "the request stream to drain", func() bool {
		info, err := tryStreamInfo(a.js, a.streams.Requests)
		return err == nil && info.State.Msgs == 0
	})
	t.Logf("all %d results after %s", total, time.Since(start).Round(time.Millisecond))
	// The restarted node catches up and is a current replica again.
	waitFor(t, 30*time.Second, victim.name+" to rejoin as a current replica", func() bool {
		for _, name := range []string{a.streams.Requests, a.streams.Results, "KV_" + ledger.DefaultBucket} {
			info, err := tryStreamInfo(a.js, name)
			if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != replicas-1 {
				return false
			}
			for _, peer := range info.Cluster.Replicas {
				if !peer.Current || peer.Offline {
					return false
				}
			}
		}
		return true
	})

	got := a.results()
	if len(got) != total {
		t.Errorf("results for %d request ids, want %d", len(got), total)
	}
	owners := map[string]int{}
	for _, r := range reqs {
		rs := got[r.id]
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want exactly 1: %+v", r.id, len(rs), rs)
			continue
		}
		if rs[0].Status != messages.StatusSucceeded {
			t.Errorf("%s: %s, want succeeded (error %+v)", r.id, rs[0].Status, rs[0].Error)
		}
		e, err := a.led.Get(context.Background(), r.id)
		if err != nil {
			t.Fatalf("ledger %s: %v", r.id, err)
		}
		owners[e.Owner]++
	}
	t.Logf("filed by %v; reconnects: replica-a %d, replica-b %d", owners, ncA.reconnects.Load(), ncB.reconnects.Load())
	if owners["replica-a"] == 0 || owners["replica-b"] == 0 {
		t.Errorf("owners %v: both replicas should have filed requests", owners)
	}
	if n := sb.CountCalls(messages.APIVMSAddQualification); n != wantVMS {
		t.Errorf("the sandbox saw %d vms.add_qualification calls for %d distinct requests", n, wantVMS)
	}
	if n, want := sb.CountCalls(messages.APIDouyinGetClassAuth), total-wantVMS; n < want {
		t.Errorf("the sandbox saw %d douyin.get_class_auth calls for %d requests", n, want)
	}
	if n := sb.TokenFetches(sandbox.DefaultAppID); n != 1 {
		t.Errorf("%d Douyin tokens fetched for %s, want 1 shared by both replicas", n, sandbox.DefaultAppID)
	}
	if dead := a.streamMsgs(a.streams.Dead); len(dead) != 0 {
		t.Errorf("%d dead letters", len(dead))
	}
}

// checkReplicas fails unless each stream has the wanted replica count and
// that many peers.
func checkReplicas(t *testing.T, js jetstream.JetStream, want int, streams ...string) {
	t.Helper()
	for _, name := range streams {
		info := streamInfo(t, js, name)
		peers := 0
		if info.Cluster != nil {
			peers = 1 + len(info.Cluster.Replicas)
		}
		if info.Config.Replicas != want || peers != want {
			t.Errorf("stream %s: %d replicas configured, %d peers; want %d", name, info.Config.Replicas, peers, want)
		}
	}
}

func tryStreamInfo(js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

func streamInfo(t *testing.T, js jetstream.JetStream, name string) *jetstream.StreamInfo {
	t.Helper()
	info, err := tryStreamInfo(js, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	return info
}

// waitUntil polls cond until it holds or timeout passes.
func waitUntil(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}
