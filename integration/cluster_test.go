package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/jshealth"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
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

	sb := filingtest.StartSandbox(t)
	// Every call takes a little while, so that the node stops mid-run.
	sb.Inject(sandbox.Fault{Latency: 20 * time.Millisecond})
	a := newPipeline(t, filingtest.Options{NC: ncA.Conn, Replicas: replicas, MaxDeliver: maxDeliver, Owner: "replica-a", Sandbox: sb})
	b := newPipeline(t, filingtest.Options{NC: ncB.Conn, Replicas: replicas, MaxDeliver: maxDeliver, Owner: "replica-b", Sandbox: sb})
	checkReplicas(t, a.JS, replicas, a.Streams.Requests, a.Streams.Results, a.Streams.Audit, a.Streams.Dead,
		"KV_"+a.Buckets.Ledger, "KV_"+a.Buckets.Tokens, "KV_"+a.Buckets.TokenLocks)

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
	publish := func(p *filingtest.Pipeline, rs []request) {
		for _, r := range rs {
			p.Publish(r.api, r.id, filingtest.Example(t, r.api, r.id))
		}
	}

	start := time.Now()
	publish(a, reqs[:total/2])
	a.Run()
	b.Run()
	filingtest.WaitFor(t, 60*time.Second, "40 results before the node stop", func() bool { return a.Count(a.Streams.Results) >= 40 })

	// Stop the node leading the request stream (and so, most likely, the
	// shared consumer): the hardest node to lose.
	victim := nodes[0]
	if info := streamInfo(t, a.JS, a.Streams.Requests); info.Cluster != nil && byName[info.Cluster.Leader] != nil {
		victim = byName[info.Cluster.Leader]
	}
	atStop := a.Count(a.Streams.Results)
	t.Logf("stopping %s (request stream leader) after %d results, %s in", victim.name, atStop, time.Since(start).Round(time.Millisecond))
	victim.stop(t)
	stoppedAt := time.Now()

	// Upstream keeps publishing while the node is down.
	publish(b, reqs[total/2:])
	progressed := waitUntil(30*time.Second, func() bool { return b.Count(b.Streams.Results) >= total*3/4 })
	duringOutage := b.Count(b.Streams.Results)
	t.Logf("%d results with %s down for %s (target reached: %v)", duringOutage, victim.name, time.Since(stoppedAt).Round(time.Millisecond), progressed)
	if duringOutage <= atStop {
		t.Errorf("no progress with one of three nodes down: %d results before, %d after", atStop, duringOutage)
	}

	victim.start(t)
	t.Logf("%s started again after %s down", victim.name, time.Since(stoppedAt).Round(time.Millisecond))
	a.WaitResults(total, 90*time.Second)
	// Let late redeliveries (lost acks) settle: the request stream is a
	// work queue, empty once every request is acked or terminated.
	filingtest.WaitFor(t, 60*time.Second, "the request stream to drain", func() bool {
		info, err := tryStreamInfo(a.JS, a.Streams.Requests)
		return err == nil && info.State.Msgs == 0
	})
	t.Logf("all %d results after %s", total, time.Since(start).Round(time.Millisecond))
	// The restarted node catches up and is a current replica again.
	filingtest.WaitFor(t, 30*time.Second, victim.name+" to rejoin as a current replica", func() bool {
		for _, name := range []string{a.Streams.Requests, a.Streams.Results, "KV_" + a.Buckets.Ledger} {
			info, err := tryStreamInfo(a.JS, name)
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

	got := a.Results()
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
		e, err := a.Ledger.Get(context.Background(), "", r.id)
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
	if dead := a.StreamMsgs(a.Streams.Dead); len(dead) != 0 {
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

// clusterFault is the setup of the fault tests: a three-node cluster with
// every stream and bucket replicated three times, two consumer replicas and
// a publisher connection, the sandbox answering every call after
// faultLatency so that most of each replica's requests in flight are in the
// middle of their vendor call when the fault hits.
type clusterFault struct {
	nodes      []*natsNode
	admin      *conn
	ncA, ncB   *conn
	a, b       *filingtest.Pipeline
	sb         *sandbox.Server
	upstream   *filingtest.Pipeline // publishes; connected to the nodes that stay healthy
	maxDeliver int
}

// faultLatency is how long the sandbox takes to answer each call in the
// fault tests.
const faultLatency = 100 * time.Millisecond

// faultStreams are every stream and bucket of the pipeline.
func faultStreams(p *filingtest.Pipeline) []string {
	b := p.Buckets
	return []string{p.Streams.Requests, p.Streams.Results, p.Streams.Audit, p.Streams.Dead,
		"KV_" + b.Ledger, "KV_" + b.Tokens, "KV_" + b.TokenLocks, "KV_" + b.Health}
}

// startClusterFault starts the cluster; replica a connects to the servers in
// the order aOrder, replica b in bOrder, the publisher to healthy only.
func startClusterFault(t *testing.T, order func(meta *natsNode, nodes []*natsNode) (aOrder, bOrder, healthy []*natsNode)) *clusterFault {
	t.Helper()
	const replicas = 3
	f := &clusterFault{maxDeliver: 30}
	f.nodes = startCluster(t, 3)
	f.admin = connect(t, "admin", urls(f.nodes...)...)
	waitClusterReady(t, newJetStream(t, f.admin.Conn), replicas, 60*time.Second)
	meta := waitMetaLeader(t, f.nodes, 30*time.Second)
	aOrder, bOrder, healthy := order(meta, f.nodes)
	f.ncA = connect(t, "replica-a", urls(aOrder...)...)
	f.ncB = connect(t, "replica-b", urls(bOrder...)...)
	up := connect(t, "upstream", urls(healthy...)...)
	f.sb = filingtest.StartSandbox(t)
	f.sb.Inject(sandbox.Fault{Latency: faultLatency})
	f.a = newPipeline(t, filingtest.Options{NC: f.ncA.Conn, Replicas: replicas, MaxDeliver: f.maxDeliver, Owner: "replica-a", Sandbox: f.sb})
	f.b = newPipeline(t, filingtest.Options{NC: f.ncB.Conn, Replicas: replicas, MaxDeliver: f.maxDeliver, Owner: "replica-b", Sandbox: f.sb})
	f.upstream = newPipeline(t, filingtest.Options{NC: up.Conn, Replicas: replicas, MaxDeliver: f.maxDeliver, Owner: "upstream", Sandbox: f.sb})
	checkReplicas(t, f.a.JS, replicas, faultStreams(f.a)...)
	for _, c := range []struct {
		c    *conn
		want *natsNode
	}{{f.ncA, aOrder[0]}, {f.ncB, bOrder[0]}} {
		if got := c.c.ConnectedUrl(); got != c.want.url {
			t.Fatalf("%s connected to %s, want %s (%s)", c.c.Opts.Name, got, c.want.url, c.want.name)
		}
	}
	return f
}

// leaders lists the leader of each stream and of the shared consumer.
func (f *clusterFault) leaders(t *testing.T) string {
	t.Helper()
	var parts []string
	for _, s := range faultStreams(f.upstream) {
		leader := "?"
		if info, err := tryStreamInfo(f.upstream.JS, s); err == nil && info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		parts = append(parts, s+"="+leader)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ci, err := f.upstream.Durable.Info(ctx); err == nil && ci.Cluster != nil {
		parts = append(parts, "consumer "+ci.Config.Durable+"="+ci.Cluster.Leader)
	}
	return strings.Join(parts, " ")
}

// publish publishes the requests through the publisher connection.
func (f *clusterFault) publish(t *testing.T, reqs []faultRequest) {
	t.Helper()
	for _, r := range reqs {
		f.upstream.Publish(r.api, r.id, taggedExample(t, r.api, r.id))
	}
}

// waitSettled waits until the nodes agree on a meta leader and every
// stream and bucket has a leader and current, online replicas: the
// cluster has healed. Not settling within timeout is an error, but the
// test goes on to count the outcomes.
func (f *clusterFault) waitSettled(t *testing.T, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	settled := waitUntil(timeout, func() bool {
		leader := ""
		for i, n := range f.nodes {
			l, err := n.metaLeader()
			if err != nil || l == "" || (i > 0 && l != leader) {
				return false
			}
			leader = l
		}
		for _, s := range faultStreams(f.upstream) {
			info, err := tryStreamInfo(f.upstream.JS, s)
			if err != nil || info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != len(f.nodes)-1 {
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
	if !settled {
		t.Errorf("the cluster did not settle (one meta leader, every stream led with current replicas) within %s of the fault's end: %s", timeout, f.leaders(t))
		return
	}
	t.Logf("cluster settled %s after the fault ended: %s", time.Since(start).Round(time.Millisecond), f.leaders(t))
}

// others returns nodes without skip, in order.
func others(nodes []*natsNode, skip ...*natsNode) []*natsNode {
	var out []*natsNode
	for _, n := range nodes {
		if !slices.Contains(skip, n) {
			out = append(out, n)
		}
	}
	return out
}

// summarize lists the kinds of health changes, "no changes" without any.
func summarize(cs []filingtest.HealthChange) string {
	if len(cs) == 0 {
		return "no changes"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Kind.String()
	}
	return strings.Join(parts, ", ")
}

// healthEvents summarises the health watch's changes after since.
func healthEvents(p *filingtest.Pipeline, since time.Time) (notReadyAfter, reconnectAfter, readyAfter time.Duration, reconnects int) {
	notReadyAfter, reconnectAfter, readyAfter = -1, -1, -1
	for _, c := range p.HealthChanges() {
		if c.At.Before(since) {
			continue
		}
		d := c.At.Sub(since).Round(100 * time.Millisecond)
		switch c.Kind {
		case jshealth.BecameNotReady:
			if notReadyAfter < 0 {
				notReadyAfter = d
			}
		case jshealth.Reconnected:
			reconnects++
			if reconnectAfter < 0 {
				reconnectAfter = d
			}
		case jshealth.BecameReady:
			if readyAfter < 0 && notReadyAfter >= 0 {
				readyAfter = d
			}
		}
	}
	return
}

// TestClusterPartitionedLeader cuts the node that leads everything (the
// JetStream meta group, every stream and bucket, the shared consumer) off
// from the other two for 20 seconds while its client port stays reachable,
// in the middle of 600 requests, with replica a connected to the cut node
// and replica b to the majority. Replica a's health watch must find that
// its server cannot serve JetStream, report not ready and move it to the
// majority. In the end: no request lost, none filed twice, none stranded,
// and every request the vendor accepted reported succeeded.
func TestClusterPartitionedLeader(t *testing.T) {
	const (
		total     = 600
		partition = 20 * time.Second
	)
	var cut *natsNode
	f := startClusterFault(t, func(meta *natsNode, nodes []*natsNode) ([]*natsNode, []*natsNode, []*natsNode) {
		cut = meta
		rest := others(nodes, cut)
		return append([]*natsNode{cut}, rest...), append(slices.Clone(rest), cut), rest
	})
	for _, s := range faultStreams(f.a) {
		moveStreamLeader(t, f.admin.Conn, f.upstream.JS, s, cut.name)
	}
	moveConsumerLeader(t, f.admin.Conn, f.upstream.JS, f.a.Streams.Requests, "qualfile", cut.name)
	if meta := waitMetaLeader(t, f.nodes, 30*time.Second); meta != cut {
		t.Fatalf("meta leader moved to %s while placing the stream leaders on %s", meta.name, cut.name)
	}
	t.Logf("cutting %s: meta leader; %s", cut.name, f.leaders(t))

	// A connection that can only ever use the cut node, to see what its
	// JetStream answers during the partition.
	pinned := connect(t, "pinned-"+cut.name, cut.url)
	pinnedJS := newJetStream(t, pinned.Conn)
	pinnedProbe, err := jshealth.OpenProbe(context.Background(), pinnedJS, jshealth.ProbeConfig{Bucket: queue.BucketNames(messages.Subjects{Prefix: "filing"}).Health, Replicas: 3, Key: "pinned"})
	if err != nil {
		t.Fatal(err)
	}

	reqs := faultRequests("part", total)
	start := time.Now()
	f.publish(t, reqs[:total/2])
	f.a.Run()
	f.b.Run()
	filingtest.WaitFor(t, 60*time.Second, "100 results before the partition", func() bool { return f.upstream.Count(f.upstream.Streams.Results) >= 100 })

	atCut := f.upstream.Count(f.upstream.Streams.Results)
	heal := cut.cutRoutes(t)
	cutAt := time.Now()
	t.Logf("cut %s off the routes after %d results, %s in", cut.name, atCut, time.Since(start).Round(time.Millisecond))

	// During the partition: upstream keeps publishing (to the majority),
	// and the pinned connection samples the cut node's JetStream.
	probeFailedAfter, streamInfoFailedAfter := time.Duration(-1), time.Duration(-1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for time.Since(cutAt) < partition-time.Second {
			ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
			perr := pinnedProbe(ctx)
			cancel()
			if perr != nil && probeFailedAfter < 0 {
				probeFailedAfter = time.Since(cutAt).Round(100 * time.Millisecond)
			}
			ctx, cancel = context.WithTimeout(context.Background(), healthTimeout)
			_, serr := pinnedJS.Stream(ctx, f.a.Streams.Requests) // a stream info request
			cancel()
			if serr != nil && streamInfoFailedAfter < 0 {
				streamInfoFailedAfter = time.Since(cutAt).Round(100 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	f.publish(t, reqs[total/2:])
	if d := partition - time.Since(cutAt); d > 0 {
		time.Sleep(d)
	}
	<-done
	duringCut := f.upstream.Count(f.upstream.Streams.Results)
	aURL := f.ncA.ConnectedUrl()
	routes, rerr := cut.numRoutes()
	heal()
	healedAt := time.Now()
	t.Logf("healed after %s: %d results during the partition; replica a on %s; on the cut node the probe write failed after %s, stream info failed after %s (-1: never); routes of the cut node %d (%v)",
		healedAt.Sub(cutAt).Round(time.Millisecond), duringCut-atCut, aURL, probeFailedAfter, streamInfoFailedAfter, routes, rerr)

	notReady, moved, ready, reconnects := healthEvents(f.a, cutAt)
	t.Logf("replica a health watch: not ready after %s, reconnect forced after %s (%d), ready again after %s; replica b: %s",
		notReady, moved, reconnects, ready, summarize(f.b.HealthChanges()))
	if probeFailedAfter < 0 || probeFailedAfter > 5*time.Second {
		t.Errorf("the health probe on the cut node failed after %s, want within 5s of the cut", probeFailedAfter)
	}
	if notReady < 0 || moved < 0 || notReady > partition || moved > partition {
		t.Errorf("replica a (on the cut node) was not reported not ready and moved during the partition: not ready after %s, moved after %s", notReady, moved)
	}
	if aURL == cut.url || aURL == "" {
		t.Errorf("replica a still on the cut node %s (%q) at the end of the partition", cut.name, aURL)
	}
	if duringCut <= atCut {
		t.Errorf("no progress during the partition: %d results before, %d after", atCut, duringCut)
	}

	f.waitSettled(t, 60*time.Second)
	o := collectOutcomes(t, f.upstream, f.sb, reqs, 90*time.Second, f.a, f.b)
	t.Logf("all settled %s after the heal, %s in all", time.Since(healedAt).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	o.log(t)
	t.Logf("reconnects: replica a %d, replica b %d", f.ncA.reconnects.Load(), f.ncB.reconnects.Load())
	o.check(t)
}

// TestClusterPausedLedgerLeader freezes (docker pause) the node leading the
// ledger's KV stream for 15 seconds in the middle of 600 requests. Every
// other stream, the consumer and the meta group are led by another node;
// replica a is connected to the frozen node, replica b to the leader of the
// rest. Replica a's health watch must move it. In the end: no request
// lost, none filed twice, none stranded, and every request the vendor
// accepted reported succeeded.
func TestClusterPausedLedgerLeader(t *testing.T) {
	const (
		total = 600
		pause = 15 * time.Second
	)
	var frozen, lead *natsNode
	f := startClusterFault(t, func(meta *natsNode, nodes []*natsNode) ([]*natsNode, []*natsNode, []*natsNode) {
		lead = meta
		frozen = others(nodes, meta)[0]
		third := others(nodes, meta, frozen)[0]
		return []*natsNode{frozen, lead, third}, []*natsNode{lead, third, frozen}, []*natsNode{lead, third}
	})
	ledgerStream := "KV_" + queue.BucketNames(messages.Subjects{Prefix: "filing"}).Ledger
	for _, s := range faultStreams(f.a) {
		to := lead
		if s == ledgerStream {
			to = frozen
		}
		moveStreamLeader(t, f.admin.Conn, f.upstream.JS, s, to.name)
	}
	moveConsumerLeader(t, f.admin.Conn, f.upstream.JS, f.a.Streams.Requests, "qualfile", lead.name)
	if meta := waitMetaLeader(t, f.nodes, 30*time.Second); meta != lead {
		t.Fatalf("meta leader moved to %s while placing the stream leaders", meta.name)
	}
	t.Logf("pausing %s (ledger leader); meta leader %s; %s", frozen.name, lead.name, f.leaders(t))

	reqs := faultRequests("pause", total)
	start := time.Now()
	f.publish(t, reqs[:total/2])
	f.a.Run()
	f.b.Run()
	filingtest.WaitFor(t, 60*time.Second, "100 results before the pause", func() bool { return f.upstream.Count(f.upstream.Streams.Results) >= 100 })

	atPause := f.upstream.Count(f.upstream.Streams.Results)
	unpause := frozen.pause(t)
	pausedAt := time.Now()
	t.Logf("paused %s after %d results, %s in", frozen.name, atPause, time.Since(start).Round(time.Millisecond))
	f.publish(t, reqs[total/2:])
	if d := pause - time.Since(pausedAt); d > 0 {
		time.Sleep(d)
	}
	duringPause := f.upstream.Count(f.upstream.Streams.Results)
	aURL := f.ncA.ConnectedUrl()
	ledgerLeader := "?"
	if info, err := tryStreamInfo(f.upstream.JS, ledgerStream); err == nil && info.Cluster != nil {
		ledgerLeader = info.Cluster.Leader
	}
	unpause()
	resumedAt := time.Now()
	t.Logf("unpaused after %s: %d results during the pause; ledger leader during the pause %s; replica a on %s",
		resumedAt.Sub(pausedAt).Round(time.Millisecond), duringPause-atPause, ledgerLeader, aURL)

	notReady, moved, ready, reconnects := healthEvents(f.a, pausedAt)
	t.Logf("replica a health watch: not ready after %s, reconnect forced after %s (%d), ready again after %s; replica b: %s",
		notReady, moved, reconnects, ready, summarize(f.b.HealthChanges()))
	if notReady < 0 || moved < 0 || notReady > pause || moved > pause {
		t.Errorf("replica a (on the paused node) was not reported not ready and moved during the pause: not ready after %s, moved after %s", notReady, moved)
	}
	if aURL == frozen.url || aURL == "" {
		t.Errorf("replica a still on the paused node %s (%q) at the end of the pause", frozen.name, aURL)
	}
	if duringPause <= atPause {
		t.Errorf("no progress during the pause: %d results before, %d after", atPause, duringPause)
	}

	f.waitSettled(t, 60*time.Second)
	o := collectOutcomes(t, f.upstream, f.sb, reqs, 90*time.Second, f.a, f.b)
	t.Logf("all settled %s after the pause ended, %s in all", time.Since(resumedAt).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	o.log(t)
	t.Logf("reconnects: replica a %d, replica b %d", f.ncA.reconnects.Load(), f.ncB.reconnects.Load())
	o.check(t)
}
