package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// killTag is the short name of each api in the request ids of
// TestSIGKILLOneOfTwoReplicas: kill-<tag>-<nnn>.
var killTag = map[messages.API]string{
	messages.APIVMSAddQualification:    "vadd",
	messages.APIVMSUpdateQualification: "vupd",
	messages.APISMSApplySignatureIdent: "sms",
	messages.APIDouyinAddRole:          "role",
	messages.APIDouyinGetClassAuth:     "auth",
}

// killIDPattern finds the request id a vendor call carries in its body.
var killIDPattern = regexp.MustCompile(`kill-(?:vadd|vupd|sms|role|auth)-[0-9]{3}`)

// TestSIGKILLOneOfTwoReplicas runs two replicas of the real binary on one
// NATS server (in the test process, so that it outlives them), queues
// 1,000 requests across the five apis, SIGKILLs one replica a third of the
// way through and lets the other finish. The vendor is a sandbox in the
// test process, outside both replicas, so that it sees every call, also
// those of the killed one. Every request must have a result (one that no
// other supersedes, and the latest), no create or update may reach the
// vendor twice, the only ambiguous outcomes are requests the killed replica
// had left "calling" in the ledger (at most one per handler), and nothing
// is left in the request stream. It fails when a request is acknowledged
// before its outcome is in the ledger: the requests acknowledged by the
// killed replica in that gap have no result.
func TestSIGKILLOneOfTwoReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the consumer binary")
	}
	const (
		perAPI      = 200
		concurrency = 32
	)
	apis := messages.APIs()
	n := perAPI * len(apis)
	bin := consumerBinary(t)

	srv := natstest.Server(t)
	sb := startSandbox(t)
	for _, f := range []sandbox.Fault{
		{Latency: 5 * time.Millisecond, Fraction: 1.0 / 4},
		{Latency: 10 * time.Millisecond, Fraction: 1.0 / 3},
		{Latency: 20 * time.Millisecond, Fraction: 1.0 / 2},
		{Latency: 40 * time.Millisecond},
	} {
		sb.Inject(f)
	}

	// The killed replica's messages come back after ack_wait, and its
	// "calling" entries are taken for dead once the survivor has watched
	// them unchanged for the lease: both the defaults (10 s each).
	cfgPath := writeConfig(t, `consumer:
  call_timeout: 2s
  retry:
    budget: 1s
reconcile:
  window: 2s
`, sb.URL())
	env := sandboxEnv("QUALFILE_NATS_URL="+srv.ClientURL(), "QUALFILE_ADMIN_LISTEN=", fmt.Sprintf("QUALFILE_CONCURRENCY=%d", concurrency))
	start := func(name string) (*exec.Cmd, *syncBuffer) {
		return startConsumer(t, name, bin, env, "--config", cfgPath, "--admin-listen", natstest.FreeAddr(t))
	}
	victim, victimOut := start("replica to kill")
	_, survivorOut := start("surviving replica")

	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	requests := killRequests(t, perAPI)
	for _, api := range apis {
		if got := len(requests[api]); got != perAPI {
			t.Fatalf("%s: %d requests", api, got)
		}
	}
	apiOf := map[string]messages.API{}
	for i := range perAPI { // interleaved, so that both replicas get every api
		for _, api := range apis {
			r := requests[api][i]
			apiOf[r.id] = api
			if _, err := js.PublishAsync("filing.request."+string(api), r.data, jetstream.WithMsgID(r.id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(20 * time.Second):
		t.Fatal("publishing timed out")
	}

	// Kill once a third of the calls are answered.
	filed := func() int { return sb.CountCalls("") - sb.CountCalls(sandbox.TokenAPI) }
	deadline := time.Now().Add(30 * time.Second)
	for filed() < n/3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls within 30 s", filed())
		}
		time.Sleep(time.Millisecond)
	}
	// At no particular instant within a call's time, not just after an
	// answer.
	time.Sleep(time.Duration(rand.Int64N(int64(20 * time.Millisecond))))
	killedAt := time.Now()
	if err := victim.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	answeredAtKill := len(sb.Calls())
	_ = victim.Wait()
	victimPID := victim.Process.Pid
	// A write the replica sent just before it died may still be on its way
	// through the server; then the ledger holds what the replica left.
	time.Sleep(300 * time.Millisecond)
	atKill := readLedger(t, js)
	victimOwner := func(e ledger.Entry) bool { return strings.Contains(e.Owner, fmt.Sprintf("-%d-", victimPID)) }
	var callingAtKill, callingReadsAtKill, victimEntries int
	wasCalling := map[string]bool{} // ids the killed replica was calling the vendor for
	for _, e := range atKill {
		if !victimOwner(e) {
			continue
		}
		victimEntries++
		if e.State == ledger.StateCalling {
			wasCalling[e.RequestID] = true
			if e.API.Resendable() {
				callingReadsAtKill++
			} else {
				callingAtKill++
			}
		}
	}
	t.Logf("SIGKILL after %d of %d calls answered; the killed replica had moved %d ledger entries last, %d of them calling a create or update, %d calling a read",
		answeredAtKill, n, victimEntries, callingAtKill, callingReadsAtKill)
	if answeredAtKill >= n {
		t.Fatalf("all %d calls answered before the kill; the test proves nothing", answeredAtKill)
	}
	if victimEntries == 0 {
		t.Fatalf("the killed replica had handled nothing; the test proves nothing\n%s", victimOut.String())
	}

	// The survivor finishes: a result for every id, and the request stream
	// empty with nothing pending.
	var results []messages.Result
	var byID map[string][]messages.Result
	var streamMsgs, ackPending, numPending uint64 = 1, 1, 1
	var drainedSince time.Time
	deadline = time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		results = readAllResults(t, js)
		byID = map[string][]messages.Result{}
		for _, r := range results {
			byID[r.RequestID] = append(byID[r.RequestID], r)
		}
		streamMsgs, ackPending, numPending = requestBacklog(t, js)
		drained := streamMsgs == 0 && ackPending == 0 && numPending == 0
		if drained && drainedSince.IsZero() {
			drainedSince = time.Now()
		} else if !drained {
			drainedSince = time.Time{}
		}
		// A result is stored before its request is settled: once no
		// request is left, no result is still to come (a second's grace
		// for what is on its way).
		if drained && (len(byID) >= n || time.Since(drainedSince) > time.Second) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("after %s: %d results for %d ids; FILING_REQUESTS holds %d messages, consumer ack pending %d, pending %d",
		time.Since(killedAt).Round(time.Millisecond), len(results), len(byID), streamMsgs, ackPending, numPending)
	if len(byID) < n {
		t.Errorf("60 s after the kill, %d of %d requests have a result", len(byID), n)
	}
	var lastResult time.Time
	for _, r := range results {
		lastResult = latest(lastResult, r.CompletedAt)
	}
	t.Logf("the last result was recorded %s after the kill", lastResult.Sub(killedAt).Round(time.Millisecond))

	// Results per id, and the final one.
	lost := 0
	var unknown []string
	perID := map[int]int{} // results per id → ids
	final := map[string]messages.Result{}
	for id := range apiOf {
		rs := byID[id]
		perID[len(rs)]++
		if len(rs) == 0 {
			lost++
			continue
		}
		superseded := map[int64]bool{}
		for _, r := range rs {
			if !r.Supersedes.IsZero() {
				superseded[r.Supersedes.UnixNano()] = true
			}
		}
		var standing []messages.Result
		latest := rs[0]
		for _, r := range rs {
			if !superseded[r.CompletedAt.UnixNano()] {
				standing = append(standing, r)
			}
			if r.CompletedAt.After(latest.CompletedAt) {
				latest = r
			}
		}
		if len(standing) != 1 {
			t.Errorf("%s: %d results that no other result supersedes, want 1: %+v", id, len(standing), rs)
			continue
		}
		if !standing[0].CompletedAt.Equal(latest.CompletedAt) {
			t.Errorf("%s: the result no other supersedes (completed %s) is not the latest (completed %s)", id,
				standing[0].CompletedAt.Format(time.RFC3339Nano), latest.CompletedAt.Format(time.RFC3339Nano))
		}
		final[id] = standing[0]
	}
	for id := range byID {
		if _, ok := apiOf[id]; !ok {
			unknown = append(unknown, id)
		}
	}

	// Vendor calls per id.
	calls := sb.Calls()
	callsOf := map[string][]sandbox.Call{}
	inFlightAtSandbox, clientGone, untraced, reads := 0, 0, 0, 0
	for _, c := range calls {
		if c.API == sandbox.TokenAPI {
			continue
		}
		if c.API == sandbox.QueryQualificationAPI || c.API == sandbox.SignatureIdentListAPI {
			reads++ // reconciliation: the body names no request
			continue
		}
		if c.Seq > int64(answeredAtKill) && c.Time.Before(killedAt) {
			inFlightAtSandbox++
		}
		if c.HTTPStatus == sandbox.StatusClientGone {
			clientGone++
		}
		id := killIDPattern.FindString(string(c.Body))
		if id == "" || apiOf[id] != c.API {
			untraced++
			t.Errorf("a %q call the test cannot trace to a request of that api (id %q): %s", c.API, id, c.Body)
			continue
		}
		callsOf[id] = append(callsOf[id], c)
	}
	twice, readsAgain, noCall, refiledCalls := 0, 0, 0, 0
	callsPerID := map[int]int{} // vendor calls per id → ids
	for id, api := range apiOf {
		cs := callsOf[id]
		callsPerID[len(cs)]++
		acted := 0 // calls the vendor filed: a client gone before the answer was not
		for _, c := range cs {
			if c.HTTPStatus != sandbox.StatusClientGone {
				acted++
			}
		}
		switch {
		case len(cs) > 1 && api.Resendable():
			readsAgain++
		case len(cs) > 1 && api.Reconcilable() && acted <= 1 && final[id].Refiled:
			refiledCalls++ // filed again after the reads found nothing: once
		case len(cs) > 1:
			twice++
			t.Errorf("%s (%s) reached the vendor %d times (%d acted on)", id, api, len(cs), acted)
		}
		if r, ok := final[id]; ok && r.Status == messages.StatusSucceeded && len(cs) == 0 {
			noCall++
			t.Errorf("%s succeeded without a vendor call", id)
		}
	}

	// Final outcomes.
	ambiguous := 0
	ambiguousCalls := map[string]int{} // what the vendor saw of the ambiguous ones
	outcomes := map[messages.API]map[string]int{}
	for id, r := range final {
		api := apiOf[id]
		if outcomes[api] == nil {
			outcomes[api] = map[string]int{}
		}
		key := string(r.Status)
		if r.Error != nil {
			key += "/" + r.Error.Class
		}
		if r.Reconciled {
			key += "/reconciled"
		}
		if r.Refiled {
			key += "/refiled"
		}
		outcomes[api][key]++
		switch {
		case r.Error != nil && r.Error.Class == messages.ClassAmbiguous:
			ambiguous++
			switch cs := callsOf[id]; {
			case len(cs) == 0:
				ambiguousCalls["never arrived"]++
			case cs[len(cs)-1].HTTPStatus == sandbox.StatusClientGone:
				ambiguousCalls["client gone, not filed"]++
			default:
				ambiguousCalls["answered"]++
			}
			if api.Resendable() {
				t.Errorf("%s: a read came out ambiguous: %+v", id, r.Error)
			}
			if api.Reconcilable() {
				t.Errorf("%s: ambiguous, although reconciliation is on: %+v", id, r.Error)
			}
			if !wasCalling[id] {
				t.Errorf("%s: ambiguous, but the killed replica was not calling the vendor for it: %+v", id, r.Error)
			}
		case r.Status != messages.StatusSucceeded:
			t.Errorf("%s (%s): %s %+v", id, api, r.Status, r.Error)
		}
	}

	t.Logf("requests %d (%d per api); ids without a result (lost) %d; results per id %v; results for unknown ids %d",
		n, perAPI, lost, perID, len(unknown))
	t.Logf("vendor calls %d (token fetches excluded; %d answered after the client had gone); vendor calls per id %v; creates/updates called more than once %d; reads called more than once %d; succeeded without a call %d; untraced calls %d",
		len(calls)-sb.CountCalls(sandbox.TokenAPI), clientGone, callsPerID, twice, readsAgain, noCall, untraced)
	for _, api := range apis {
		t.Logf("final outcomes %-26s %v", api, outcomes[api])
	}
	t.Logf("ambiguous final results %d; in flight at the kill: %d ledger entries of the killed replica calling a create or update (bound), %d calls received by the sandbox and not yet answered (of both replicas), concurrency %d",
		ambiguous, callingAtKill, inFlightAtSandbox, concurrency)
	t.Logf("the vendor's side of the ambiguous results: %v", ambiguousCalls)
	refiled, reconciled := 0, 0
	for _, r := range final {
		if r.Refiled {
			refiled++
		}
		if r.Reconciled {
			reconciled++
		}
	}
	t.Logf("reconciliation: %d reads of the vendor's records (SMS baselines included); %d results reconciled, %d filed again once (%d of them after a first call that reached the vendor and did not file)",
		reads, reconciled, refiled, refiledCalls)

	// The sandbox's records prove each VMS and SMS create found or filed
	// exactly once: one record per request, the one its result names.
	st := sb.State()
	qualNo, smsID := map[string][]string{}, map[string][]int64{}
	for _, q := range st.Qualifications {
		qualNo[strings.TrimPrefix(q.Entity, "示例科技 ")] = append(qualNo[strings.TrimPrefix(q.Entity, "示例科技 ")], q.QualificationNo)
	}
	for _, si := range st.SignatureIdents {
		smsID[si.MaterialName] = append(smsID[si.MaterialName], si.ID)
	}
	for id, api := range apiOf {
		r := final[id]
		var want string
		switch api {
		case messages.APIVMSAddQualification:
			if len(qualNo[id]) != 1 {
				t.Errorf("%s: the vendor holds %d qualifications for it, want 1", id, len(qualNo[id]))
				continue
			}
			want = fmt.Sprintf(`{"QualificationNo":%q}`, qualNo[id][0])
		case messages.APISMSApplySignatureIdent:
			if len(smsID[id]) != 1 {
				t.Errorf("%s: the vendor holds %d signature idents for it, want 1", id, len(smsID[id]))
				continue
			}
			want = fmt.Sprintf(`{"id":%d,"id_string":"%d"}`, smsID[id][0], smsID[id][0])
		default:
			continue
		}
		if r.Status == messages.StatusSucceeded && string(r.Result) != want {
			t.Errorf("%s: result %s, the vendor's record %s", id, r.Result, want)
		}
	}

	if lost > 0 {
		t.Errorf("%d of %d requests have no result", lost, n)
	}
	if len(unknown) > 0 {
		t.Errorf("results for ids never published: %v", unknown)
	}
	// The bound is the ledger's count, not the sandbox's: a replica may
	// die after the vendor answered but before it recorded the answer, or
	// after it recorded "calling" but before the request left; either is
	// rightly ambiguous though the sandbox had nothing in flight. Both are
	// "calling" entries of the killed replica, at most one per handler.
	if ambiguous > callingAtKill {
		t.Errorf("%d ambiguous results, but the killed replica was calling only %d creates or updates", ambiguous, callingAtKill)
	}
	if callingAtKill+callingReadsAtKill > concurrency {
		t.Errorf("%d entries calling for a replica with concurrency %d", callingAtKill+callingReadsAtKill, concurrency)
	}
	if streamMsgs != 0 || ackPending != 0 || numPending != 0 {
		t.Errorf("request stream not drained: %d messages, %d ack pending, %d pending", streamMsgs, ackPending, numPending)
	}
	notDone := map[ledger.State][]string{}
	for _, e := range readLedger(t, js) {
		if e.State != ledger.StateDone {
			notDone[e.State] = append(notDone[e.State], e.RequestID)
		}
	}
	for state, ids := range notDone {
		slices.Sort(ids)
		t.Errorf("%d ledger entries left %s: %v", len(ids), state, ids[:min(len(ids), 5)])
	}
	if t.Failed() {
		t.Logf("surviving replica's log (tail):\n%s", tail(survivorOut.String(), 40))
	}
}

type killRequest struct {
	id   string
	data []byte
}

// killRequests makes perAPI requests of each api from examples/<api>.json,
// each with a fresh id that its vendor call carries in a free-text field.
func killRequests(t *testing.T, perAPI int) map[messages.API][]killRequest {
	t.Helper()
	out := map[messages.API][]killRequest{}
	for _, api := range messages.APIs() {
		example, err := os.ReadFile(filepath.Join("..", "..", "examples", string(api)+".json"))
		if err != nil {
			t.Fatal(err)
		}
		for i := range perAPI {
			var env map[string]any
			if err := json.Unmarshal(example, &env); err != nil {
				t.Fatal(err)
			}
			id := fmt.Sprintf("kill-%s-%03d", killTag[api], i)
			env["id"] = id
			p := env["payload"].(map[string]any)
			switch api {
			case messages.APIVMSAddQualification:
				scenario(p)["Description"] = id
				// One company per request: reconciliation matches a lost
				// answer by the entity and its credit code.
				p["QualificationMainInfoFormDO"].(map[string]any)["QualificationEntity"] = "示例科技 " + id
			case messages.APIVMSUpdateQualification:
				scenario(p)["Description"] = id
				// A rejected entity name keeps the seed qualification
				// rejected, so that every update is accepted.
				p["QualificationMainInfoFormDO"].(map[string]any)["QualificationEntity"] = "北京示例科技有限公司 REJECT"
			case messages.APISMSApplySignatureIdent:
				p["materialName"] = id // at most 20 characters
			case messages.APIDouyinAddRole:
				info := p["institution_role_info"].(map[string]any)["institution_info"].(map[string]any)
				info["desc"] = id // 12 to 200
				// A rejected role may be filed again, so that every
				// add_role on the one entity is accepted.
				info["record_name"] = "REJECT " + info["record_name"].(string)
			case messages.APIDouyinGetClassAuth:
				p["partner_entity_id"] = id // only matched for industry_role 1
			}
			data, err := json.Marshal(env)
			if err != nil {
				t.Fatal(err)
			}
			req, err := messages.ParseRequest(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := req.ValidateFor(api); err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			out[api] = append(out[api], killRequest{id: id, data: data})
		}
	}
	return out
}

func scenario(payload map[string]any) map[string]any {
	return payload["QualificationScenarioInfoFormDOList"].([]any)[0].(map[string]any)
}

// readAllResults reads every message of the result stream.
func readAllResults(t *testing.T, js jetstream.JetStream) []messages.Result {
	return readAll[messages.Result](t, js, "FILING_RESULTS")
}

// readAllAudit reads every message of the audit stream.
func readAllAudit(t *testing.T, js jetstream.JetStream) []messages.AuditEvent {
	return readAll[messages.AuditEvent](t, js, "FILING_AUDIT")
}

// readAll reads every message of a stream as a T.
func readAll[T any](t *testing.T, js jetstream.JetStream, stream string) []T {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := queue.Read(ctx, js, stream, "")
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	for _, m := range msgs {
		var v T
		if err := json.Unmarshal(m.Data, &v); err != nil {
			t.Errorf("%s on %s: %v", stream, m.Subject, err)
			continue
		}
		out = append(out, v)
	}
	return out
}

// requestBacklog is what the request stream still holds: its messages, and
// the shared consumer's unacknowledged and undelivered ones.
func requestBacklog(t *testing.T, js jetstream.JetStream) (msgs, ackPending, pending uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "FILING_REQUESTS")
	if err != nil {
		t.Fatal(err)
	}
	si, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Consumer(ctx, "qualfile")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return si.State.Msgs, uint64(ci.NumAckPending), ci.NumPending
}

// readLedger reads every entry of the ledger bucket.
func readLedger(t *testing.T, js jetstream.JetStream) []ledger.Entry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, "FILING_LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	var out []ledger.Entry
	for u := range w.Updates() {
		if u == nil {
			return out // the initial values are all in
		}
		var e ledger.Entry
		if err := json.Unmarshal(u.Value(), &e); err != nil {
			t.Fatalf("ledger key %s: %v", u.Key(), err)
		}
		out = append(out, e)
	}
	t.Fatal("ledger watch ended before its initial values")
	return nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
