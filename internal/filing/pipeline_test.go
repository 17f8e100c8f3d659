package filing_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

func TestExamplesSucceed(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	for _, api := range messages.APIs() {
		h.publish(api, "ex-"+string(api), example(t, api, "ex-"+string(api)))
	}
	got := h.results(len(messages.APIs()), 10*time.Second)
	for _, api := range messages.APIs() {
		r := got["ex-"+string(api)]
		if r.Status != messages.StatusSucceeded || r.Attempts != 1 || r.UpstreamRequestID == "" {
			t.Errorf("%s: %+v (error %+v)", api, r, r.Error)
		}
	}
	if no := string(got["ex-vms.add_qualification"].Result); !strings.Contains(no, `"QualificationNo":"QUA`) {
		t.Errorf("vms add result %s", no)
	}
	if id := string(got["ex-sms.apply_signature_ident"].Result); id != `{"id":9007199254740993,"id_string":"9007199254740993"}` {
		t.Errorf("sms result %s, want the exact 64-bit id", id)
	}
}

func TestInvalidExamplesRejected(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	for _, api := range messages.APIs() {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "invalid", string(api)+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var env struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(b, &env)
		h.publish(api, "invalid-"+string(api), b)
	}
	got := h.results(len(messages.APIs()), 10*time.Second)
	for id, r := range got {
		if r.Status != messages.StatusRejected || r.Error == nil || r.Error.Class != messages.ClassInvalid || len(r.Error.Fields) < 3 {
			t.Errorf("%s: %+v", id, r)
		}
	}
	if n := h.sb.CountCalls(""); n != 0 {
		t.Errorf("the sandbox was called %d times for invalid requests", n)
	}
}

func TestTransientThenSuccess(t *testing.T) {
	for _, tc := range []struct {
		api  messages.API
		code string
	}{
		{messages.APIVMSAddQualification, "SystemError"},
		{messages.APISMSApplySignatureIdent, "1999"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			h := newHarness(t, harnessOpts{})
			h.sb.Inject(sandbox.Fault{API: tc.api, Code: tc.code, Count: 3})
			h.run()
			h.publish(tc.api, "flaky-1", example(t, tc.api, "flaky-1"))
			r := h.results(1, 10*time.Second)["flaky-1"]
			if r.Status != messages.StatusSucceeded || r.Attempts != 4 {
				t.Fatalf("result %+v, want succeeded after 4 attempts", r)
			}
			evs := h.audit("flaky-1")
			if n := countEvents(evs, messages.EventAttempt); n != 4 {
				t.Fatalf("%d attempt events, want 4: %+v", n, evs)
			}
			if n := h.sb.CountCalls(tc.api); n != 4 {
				t.Fatalf("sandbox saw %d calls, want 4", n)
			}
		})
	}
}

func TestPermanentFailsAtOnce(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.sb.Inject(sandbox.Fault{API: messages.APIVMSAddQualification, Code: "RequestParametersError"})
	h.run()
	h.publish(messages.APIVMSAddQualification, "perm-1", example(t, messages.APIVMSAddQualification, "perm-1"))
	r := h.results(1, 10*time.Second)["perm-1"]
	if r.Status != messages.StatusFailed || r.Attempts != 1 || r.Error == nil || r.Error.Class != messages.ClassPermanent || r.Error.Code != "RequestParametersError" {
		t.Fatalf("result %+v", r)
	}
	time.Sleep(300 * time.Millisecond) // a wrong redelivery would show now
	if n := h.sb.CountCalls(messages.APIVMSAddQualification); n != 1 {
		t.Fatalf("sandbox saw %d calls, want 1", n)
	}
}

// TestStormDefersThenDeadLetters: a transient storm that outlasts the
// in-process budget waits in the broker (NakWithDelay, never an immediate
// redelivery), is dead-lettered after the last delivery with a failed
// result, and replay brings it back.
func TestStormDefersThenDeadLetters(t *testing.T) {
	h := newHarness(t, harnessOpts{maxDeliver: 3})
	fault := h.sb.Inject(sandbox.Fault{API: messages.APIVMSAddQualification, Code: "SystemError"})
	stop := h.run()
	h.publish(messages.APIVMSAddQualification, "storm-1", example(t, messages.APIVMSAddQualification, "storm-1"))
	r := h.results(1, 20*time.Second)["storm-1"]
	if r.Status != messages.StatusFailed || r.Error == nil || r.Error.Class != messages.ClassTransient || r.Attempts != 12 {
		t.Fatalf("result %+v, want failed/transient after 3 deliveries of 4 attempts", r)
	}
	evs := h.audit("storm-1")
	if n := countEvents(evs, messages.EventDeferred); n != 2 {
		t.Fatalf("%d deferred events, want 2", n)
	}
	// The first attempt of each redelivery comes at least the redelivery
	// delay (50ms, less 20%% jitter) after the deferral.
	var deferredAt time.Time
	for _, ev := range evs {
		switch {
		case ev.Event == messages.EventDeferred:
			deferredAt = ev.Time
		case ev.Event == messages.EventAttempt && !deferredAt.IsZero():
			if gap := ev.Time.Sub(deferredAt); gap < 40*time.Millisecond {
				t.Fatalf("redelivered %s after deferral: an immediate redelivery", gap)
			}
			deferredAt = time.Time{}
		}
	}
	if countEvents(evs, messages.EventDeadLetter) != 1 {
		t.Fatalf("no dead_letter event: %+v", evs)
	}
	dead, err := operator.ReadDead(context.Background(), h.js, h.subjects)
	if err != nil || len(dead) != 1 || dead[0].RequestID != "storm-1" || dead[0].Class != messages.ClassTransient {
		t.Fatalf("dead letters %+v, %v", dead, err)
	}

	// The storm is over; the operator replays it.
	h.sb.RemoveFault(fault)
	replayed, err := h.Order(control.ActionReplay, control.Order{RequestID: "storm-1"})
	if err != nil || len(replayed.Items) != 1 || replayed.Items[0].Skipped != "" {
		t.Fatalf("replay %+v, %v", replayed, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if e, err := h.led.Get(context.Background(), "", "storm-1"); err == nil && e.Result != nil && e.Result.Status == messages.StatusSucceeded {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	e, err := h.led.Get(context.Background(), "", "storm-1")
	if err != nil || e.Result == nil || e.Result.Status != messages.StatusSucceeded {
		t.Fatalf("after replay: %+v, %v", e, err)
	}
	if dead, _ := operator.ReadDead(context.Background(), h.js, h.subjects); len(dead) != 0 {
		t.Fatalf("dead letter still there after replay: %+v", dead)
	}
	// Both outcomes are in the durable result stream: the replay's success
	// is not dropped as a duplicate of the first failure.
	var statuses []messages.Status
	for _, m := range h.streamMsgs(h.Streams.Results) {
		var r messages.Result
		_ = json.Unmarshal(m.Data, &r)
		statuses = append(statuses, r.Status)
	}
	if len(statuses) != 2 || statuses[0] != messages.StatusFailed || statuses[1] != messages.StatusSucceeded {
		t.Fatalf("results stream holds %v, want [failed succeeded]", statuses)
	}
}

func TestRedeliveryAfterSuccessDoesNotCall(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	data := example(t, messages.APIVMSAddQualification, "once-1")
	h.publish(messages.APIVMSAddQualification, "once-1", data)
	first := h.results(1, 10*time.Second)["once-1"]
	// The same request again, past the duplicate window (another msg id).
	h.publish(messages.APIVMSAddQualification, "once-1-again", data)
	deadline := time.Now().Add(5 * time.Second)
	for countEvents(h.audit("once-1"), messages.EventDuplicate) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if countEvents(h.audit("once-1"), messages.EventDuplicate) != 1 {
		t.Fatal("no duplicate event for the redelivered request")
	}
	if n := h.sb.CountCalls(messages.APIVMSAddQualification); n != 1 {
		t.Fatalf("sandbox saw %d calls, want 1", n)
	}
	e, err := h.led.Get(context.Background(), "", "once-1")
	if err != nil || e.Result == nil || string(e.Result.Result) != string(first.Result) {
		t.Fatalf("ledger %+v %v, want the first result %s", e, err, first.Result)
	}
}

// TestAmbiguousAfterCrash: a create call found "calling" in the ledger is
// not re-filed: failed/ambiguous, dead-lettered, replayable only by force.
func TestAmbiguousAfterCrash(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	ctx := context.Background()
	e, _, err := h.led.Claim(ctx, "crash-1", messages.APIVMSAddQualification, "dead-replica")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.led.Transition(ctx, e, ledger.StateCalling, func(e *ledger.Entry) { e.UpdatedAt = time.Now().Add(-time.Hour) }); err != nil {
		t.Fatal(err)
	}
	h.run()
	h.publish(messages.APIVMSAddQualification, "crash-1", example(t, messages.APIVMSAddQualification, "crash-1"))
	r := h.results(1, 10*time.Second)["crash-1"]
	if r.Status != messages.StatusFailed || r.Error == nil || r.Error.Class != messages.ClassAmbiguous {
		t.Fatalf("result %+v", r)
	}
	if n := h.sb.CountCalls(""); n != 0 {
		t.Fatalf("sandbox called %d times for an ambiguous request", n)
	}
	replayed, err := h.Order(control.ActionReplay, control.Order{RequestID: "crash-1"})
	if err != nil || len(replayed.Items) != 1 || !strings.Contains(replayed.Items[0].Skipped, "ambiguous") {
		t.Fatalf("replay without force: %+v %v", replayed, err)
	}
}

func TestUndecodableDeadLettered(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	h.publish(messages.APIVMSAddQualification, "junk-1", []byte("\xff not json"))
	deadline := time.Now().Add(5 * time.Second)
	var dead []operator.DeadLetter
	for len(dead) == 0 && time.Now().Before(deadline) {
		dead, _ = operator.ReadDead(context.Background(), h.js, h.subjects)
		time.Sleep(20 * time.Millisecond)
	}
	if len(dead) != 1 || !strings.Contains(dead[0].Reason, "UTF-8") || string(dead[0].Data) != "\xff not json" {
		t.Fatalf("dead letters %+v", dead)
	}
}

// TestShutdownLosesNothing stops the consumer in the middle of 1,000
// requests and starts another: every request succeeds exactly once.
func TestShutdownLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 requests")
	}
	const n = 1000
	h := newHarness(t, harnessOpts{})
	h.sb.Inject(sandbox.Fault{API: messages.APIVMSAddQualification, Latency: 2 * time.Millisecond})
	for i := range n {
		id := fmt.Sprintf("bulk-%04d", i)
		h.publish(messages.APIVMSAddQualification, id, example(t, messages.APIVMSAddQualification, id))
	}
	stop := h.run()
	for h.sb.CountCalls(messages.APIVMSAddQualification) < n/3 {
		time.Sleep(time.Millisecond)
	}
	stop() // SIGTERM: stop pulling, finish in-flight work, ack
	atStop := h.sb.CountCalls(messages.APIVMSAddQualification)
	t.Logf("stopped after %d calls", atStop)
	if atStop >= n {
		t.Fatalf("the consumer finished before it was stopped (%d calls); the test proves nothing", atStop)
	}
	h.run()
	got := h.results(n, 60*time.Second)
	for id, r := range got {
		if r.Status != messages.StatusSucceeded {
			t.Fatalf("%s: %+v", id, r)
		}
	}
	if calls := h.sb.CountCalls(messages.APIVMSAddQualification); calls != n {
		t.Fatalf("sandbox saw %d filings for %d requests", calls, n)
	}
}

// TestTwoConsumersShareWorkAndToken runs two replicas on one stream.
func TestTwoConsumersShareWorkAndToken(t *testing.T) {
	_, nc, srv := natstest.JetStream(t)
	a := newHarness(t, harnessOpts{nc: nc, owner: "replica-a"})
	b := newHarness(t, harnessOpts{nc: natstest.Connect(t, srv), owner: "replica-b", sb: a.sb})
	a.run()
	b.run()
	const n = 40
	for i := range n {
		id := fmt.Sprintf("share-%02d", i)
		a.publish(messages.APIDouyinGetClassAuth, id, example(t, messages.APIDouyinGetClassAuth, id))
	}
	a.results(n, 20*time.Second)
	owners := map[string]int{}
	for i := range n {
		e, err := a.led.Get(context.Background(), "", fmt.Sprintf("share-%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		owners[e.Owner]++
	}
	if owners["replica-a"] == 0 || owners["replica-b"] == 0 {
		t.Fatalf("work not shared: %v", owners)
	}
	if f := a.sb.TokenFetches(sandbox.DefaultAppID); f != 1 {
		t.Fatalf("%d token fetches, want 1 shared token", f)
	}
}

var _ = sync.Mutex{}

// TestShutdownMidCallDoesNotRefile: the grace period ends while a create
// call is at the vendor. The next delivery must not send it again: it is
// ambiguous, and the vendor saw one call.
func TestShutdownMidCallDoesNotRefile(t *testing.T) {
	h := newHarness(t, harnessOpts{grace: 200 * time.Millisecond})
	h.sb.Inject(sandbox.Fault{API: messages.APIVMSAddQualification, Latency: 1500 * time.Millisecond})
	stop := h.run()
	h.publish(messages.APIVMSAddQualification, "midcall-1", example(t, messages.APIVMSAddQualification, "midcall-1"))
	// The sandbox records a call when it answers; the call starts within
	// milliseconds of publishing and takes 1.5s.
	time.Sleep(300 * time.Millisecond)
	stop()
	e, err := h.led.Get(context.Background(), "", "midcall-1")
	if err != nil || e.State != ledger.StateCalling {
		t.Fatalf("after shutdown mid-call the ledger holds %+v (%v), want calling", e, err)
	}
	h.run()
	r := h.results(1, 15*time.Second)["midcall-1"]
	if r.Status != messages.StatusFailed || r.Error == nil || r.Error.Class != messages.ClassAmbiguous {
		t.Fatalf("result %+v, want failed/ambiguous", r)
	}
	time.Sleep(1600 * time.Millisecond) // let any second call land
	if n := len(h.sb.Calls()); n != 1 {
		t.Fatalf("the vendor saw %d calls, want 1", n)
	}
}

// TestReplyToOnlyIntoTheSubmittersInbox: a reply_to outside the allowed
// prefixes (by default the submitters' inbox, _INBOX.filing.submitter) is
// rejected, naming the field, before anything is sent, and nothing is
// sent to it either; one inside gets its result there.
func TestReplyToOnlyIntoTheSubmittersInbox(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	// The replies to the inbox refused and to the submitters' inboxes, in
	// the order the consumer sends them (one channel, filled in the order
	// the connection reads them).
	replies := make(chan *nats.Msg, 16)
	for _, subject := range []string{"_INBOX.abc", roles.Inbox(roles.Submitter, h.subjects) + ".>"} {
		if _, err := h.NC.ChanSubscribe(subject, replies); err != nil {
			t.Fatal(err)
		}
	}
	send := func(id, replyTo string) {
		var env map[string]json.RawMessage
		_ = json.Unmarshal(example(t, messages.APIDouyinGetClassAuth, id), &env)
		env["reply_to"], _ = json.Marshal(replyTo)
		data, _ := json.Marshal(env)
		h.publish(messages.APIDouyinGetClassAuth, id, data)
	}
	send("own-1", "filing.request.douyin.get_class_auth") // a reply there would be taken for a request
	send("inbox-1", "_INBOX.abc")
	got := h.results(2, 10*time.Second)
	for _, id := range []string{"own-1", "inbox-1"} {
		if r := got[id]; r.Status != messages.StatusRejected || r.Error == nil || len(r.Error.Fields) != 1 || r.Error.Fields[0].Field != "reply_to" {
			t.Errorf("%s: %s, want rejected for its reply_to", id, describeResult(r))
		}
	}
	// Settled, and whatever they sent handled: a rejection fed back as a
	// request would have a result of its own by now.
	filingtest.WaitFor(t, 10*time.Second, "the requests settled", h.Drained)
	if n := len(h.Results()); n != 2 {
		t.Errorf("%d requests have results, want 2: a rejection was sent to its reply_to and taken for a request", n)
	}

	inbox := roles.Inbox(roles.Submitter, h.subjects) + ".t1"
	send("ok-1", inbox)
	if r := h.results(3, 10*time.Second)["ok-1"]; r.Status != messages.StatusSucceeded {
		t.Errorf("ok-1: %s", describeResult(r))
	}
	calls := 0
	for _, c := range h.Sandbox.Calls() {
		if c.API == messages.APIDouyinGetClassAuth {
			calls++
		}
	}
	if calls != 1 {
		t.Errorf("%d vendor calls, want 1", calls)
	}
	// The first reply the consumer sent is ok-1's, to its inbox: none went
	// to _INBOX.abc before it.
	var m *nats.Msg
	select {
	case m = <-replies:
	case <-time.After(5 * time.Second):
		t.Fatal("no reply")
	}
	var r messages.Result
	if err := json.Unmarshal(m.Data, &r); err != nil || m.Subject != inbox || r.RequestID != "ok-1" {
		t.Errorf("the first reply went to %s: %s (%v)", m.Subject, m.Data, err)
	}
}

// TestReceivedEventCarriesTheRedactedPayload: the received audit event of
// every api holds the request's payload as messages.Redact makes it (ID and
// phone numbers masked, names and secrets replaced, file contents reduced
// to size and digest), and nothing of it unredacted.
func TestReceivedEventCarriesTheRedactedPayload(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	for _, api := range messages.APIs() {
		h.publish(api, "red-"+string(api), example(t, api, "red-"+string(api)))
	}
	h.results(len(messages.APIs()), 10*time.Second)
	for _, api := range messages.APIs() {
		id := "red-" + string(api)
		var env struct {
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal(example(t, api, id), &env); err != nil {
			t.Fatal(err)
		}
		var received *messages.AuditEvent
		for _, ev := range h.audit(id) {
			if ev.Event == messages.EventReceived {
				received = &ev
			}
		}
		if received == nil {
			t.Fatalf("%s: no received event", api)
		}
		var got, want any
		if err := json.Unmarshal(received.Payload, &got); err != nil {
			t.Fatalf("%s: received payload %q: %v", api, received.Payload, err)
		}
		if err := json.Unmarshal(messages.Redact(env.Payload), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: received payload\n%s\nwant\n%s", api, received.Payload, messages.Redact(env.Payload))
		}
		if strings.Contains(string(received.Payload), "base64,") {
			t.Errorf("%s: a file's content is in the received event: %.200s", api, received.Payload)
		}
	}
}

// TestRejectedWithoutUsableIDCorrelates: a request rejected for its id
// (missing, too long, against the rules) still gets a result the publisher
// can match: the request's stream sequence, and the SHA-256 of the id as
// sent when there was one.
func TestRejectedWithoutUsableIDCorrelates(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	api := messages.APIVMSAddQualification
	long := strings.Repeat("x", 300)
	seqs := map[uint64]string{} // stream sequence → the id sent
	for _, id := range []string{"", long, "has space"} {
		var env map[string]json.RawMessage
		if err := json.Unmarshal(example(t, api, "x"), &env); err != nil {
			t.Fatal(err)
		}
		delete(env, "id")
		if id != "" {
			env["id"], _ = json.Marshal(id)
		}
		data, _ := json.Marshal(env)
		ack, err := h.js.Publish(context.Background(), h.subjects.Request(api), data)
		if err != nil {
			t.Fatal(err)
		}
		seqs[ack.Sequence] = id
	}
	deadline := time.Now().Add(10 * time.Second)
	got := map[uint64]messages.Result{}
	for len(got) < len(seqs) && time.Now().Before(deadline) {
		for _, m := range h.StreamMsgs(h.Streams.Results) {
			var r messages.Result
			if json.Unmarshal(m.Data, &r) == nil && r.StreamSeq != 0 {
				got[r.StreamSeq] = r
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for seq, id := range seqs {
		r, ok := got[seq]
		if !ok {
			t.Errorf("no result carries stream_seq %d (id %.20q)", seq, id)
			continue
		}
		want := ""
		if id != "" {
			sum := sha256.Sum256([]byte(id))
			want = hex.EncodeToString(sum[:])
		}
		if r.Status != messages.StatusRejected || r.RequestIDSHA256 != want {
			t.Errorf("id %.20q: status %s, request_id_sha256 %q, want rejected and %q", id, r.Status, r.RequestIDSHA256, want)
		}
	}
}

// TestResubmissionOnTheBroker: a request the vendor refused for good is
// sent again, changed, under its id (its own Nats-Msg-Id): it is filed,
// and its result supersedes the refusal; an identical copy of it is then
// answered from the ledger, not filed again.
func TestResubmissionOnTheBroker(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	api, id := messages.APIVMSAddQualification, "resub-1"
	h.sb.Inject(sandbox.Fault{API: api, Code: "RequestParametersError", Count: 1})
	h.run()
	first := example(t, api, id)
	h.publish(api, id, first)
	filingtest.WaitFor(t, 10*time.Second, "the refusal", func() bool { return len(h.Results()[id]) == 1 })
	refused := h.Results()[id][0]
	if refused.Status != messages.StatusFailed {
		t.Fatalf("first outcome %+v, want failed", refused)
	}
	var env map[string]json.RawMessage
	if err := json.Unmarshal(first, &env); err != nil {
		t.Fatal(err)
	}
	var changed bytes.Buffer
	if err := json.Indent(&changed, env["payload"], "", "  "); err != nil {
		t.Fatal(err)
	}
	second := bytes.Replace(first, env["payload"], changed.Bytes(), 1)
	for _, msgID := range []string{id + ":2", id + ":3"} { // the corrected request, then an identical copy of it
		m := nats.NewMsg(h.subjects.Request(api))
		m.Data = second
		if _, err := h.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(msgID)); err != nil {
			t.Fatal(err)
		}
		filingtest.WaitFor(t, 10*time.Second, "settled", h.Drained)
	}
	rs := h.Results()[id]
	if len(rs) != 2 || rs[1].Status != messages.StatusSucceeded || !rs[1].Supersedes.Equal(refused.CompletedAt) {
		t.Fatalf("results %s: want the refusal, then a success that supersedes it", statuses(rs))
	}
	if n := h.sb.CountCalls(api); n != 2 {
		t.Errorf("the vendor saw %d calls, want 2 (the refused one and the corrected one)", n)
	}
	if n := countEvents(h.audit(id), messages.EventDuplicate); n != 1 {
		t.Errorf("%d duplicate events, want 1 (the identical copy)", n)
	}
}

// TestReceivedIsStoredBeforeTheCall: while the vendor call hangs, the
// trail already holds received, with the request's payload (redacted).
func TestReceivedIsStoredBeforeTheCall(t *testing.T) {
	h := newHarness(t, harnessOpts{upstream: slowUpstream(3 * time.Second)})
	h.run()
	api, id := messages.APIVMSAddQualification, "early-1"
	h.publish(api, id, example(t, api, id))
	filingtest.WaitFor(t, 2*time.Second, "received in the trail while the call hangs", func() bool {
		evs := h.audit(id)
		return len(evs) == 1 && evs[0].Event == messages.EventReceived && len(evs[0].Payload) > 0
	})
	if rs := h.Results()[id]; len(rs) != 0 {
		t.Fatalf("results %s before the call could have ended", statuses(rs))
	}
}
