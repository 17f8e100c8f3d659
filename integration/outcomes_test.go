package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// The fault tests' bookkeeping: what was published, what the vendor (the
// sandbox) saw per request id, what results came out, and what is left in
// the request stream.

// faultRequest is one published request.
type faultRequest struct {
	api messages.API
	id  string
}

// creates reports whether the request's call creates a vendor record (so
// that a second call would file it twice).
func (r faultRequest) creates() bool { return r.api == messages.APIVMSAddQualification }

// faultRequests makes total requests named prefix-NNNN: three of four are
// VMS AddQualification (a create call), one of four Douyin get_class_auth
// (a read, which also needs the shared Douyin token).
func faultRequests(prefix string, total int) []faultRequest {
	reqs := make([]faultRequest, total)
	for i := range reqs {
		api := messages.APIVMSAddQualification
		if i%4 == 3 {
			api = messages.APIDouyinGetClassAuth
		}
		reqs[i] = faultRequest{api, fmt.Sprintf("%s-%04d", prefix, i)}
	}
	return reqs
}

// tagOpen and tagClose enclose the request id written into the vendor
// payload of a create call, so that each sandbox call can be traced to its
// request.
const tagOpen, tagClose = "[qf-id:", "]"

var tagPattern = regexp.MustCompile(regexp.QuoteMeta(tagOpen) + `([A-Za-z0-9._:-]+)` + regexp.QuoteMeta(tagClose))

// taggedExample is examples/<api>.json with the given id and, for VMS
// AddQualification, the id appended to the first calling scenario's
// free-text Description.
func taggedExample(tb testing.TB, api messages.API, id string) []byte {
	tb.Helper()
	b := filingtest.Example(tb, api, id)
	if api != messages.APIVMSAddQualification {
		return b
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var env map[string]any
	if err := dec.Decode(&env); err != nil {
		tb.Fatal(err)
	}
	payload, _ := env["payload"].(map[string]any)
	list, _ := payload["QualificationScenarioInfoFormDOList"].([]any)
	if len(list) == 0 {
		tb.Fatalf("%s example: no calling scenario to tag", api)
	}
	scenario, _ := list[0].(map[string]any)
	desc, _ := scenario["Description"].(string)
	scenario["Description"] = desc + " " + tagOpen + id + tagClose
	out, err := json.Marshal(env)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// outcomes are the counts a fault test reports and checks.
type outcomes struct {
	published int
	// Per request id, from the result stream: the final result is the one
	// with the latest completed_at (a later result may supersede an
	// earlier ambiguous one).
	final        map[string]messages.Result
	results      int            // result messages
	multiResult  int            // ids with more than one result
	finalStatus  map[string]int // final outcome: succeeded, failed/ambiguous, failed/transient, …
	lost         []string       // published, no result
	createCalls  map[string]int // per id, create calls the sandbox answered or saw
	accepted     map[string]bool
	filedTwice   []string // more than one create call
	readCalls    int
	acceptedBad  []string // the vendor accepted, the final result is not succeeded
	unsentAmbig  []string // the vendor never saw it, the final result is ambiguous
	deadLetters  int
	reqStreamMsg uint64 // left in the request stream
	ackPending   int
	numPending   uint64
	drained      bool
}

// collectOutcomes waits (up to drainTimeout) for the request stream and
// the shared consumer to be empty, then reads the results and the sandbox's
// calls. p must be connected to a server that can serve JetStream.
func collectOutcomes(t *testing.T, p *filingtest.Pipeline, sb *sandbox.Server, reqs []faultRequest, drainTimeout time.Duration, replicas ...*filingtest.Pipeline) *outcomes {
	t.Helper()
	o := &outcomes{
		published:   len(reqs),
		final:       map[string]messages.Result{},
		finalStatus: map[string]int{},
		createCalls: map[string]int{},
		accepted:    map[string]bool{},
	}
	o.drained = waitUntil(drainTimeout, func() bool {
		o.reqStreamMsg, o.ackPending, o.numPending = leftovers(p)
		for _, r := range replicas {
			// A replica may still be settling what it alone knows (a
			// vendor answer, a call it never sent) after the stream is empty.
			if r.Processor.Active() > 0 {
				return false
			}
		}
		return o.reqStreamMsg == 0 && o.ackPending == 0 && o.numPending == 0
	})

	for id, rs := range p.Results() {
		o.results += len(rs)
		if len(rs) > 1 {
			o.multiResult++
		}
		last := rs[0]
		for _, r := range rs[1:] {
			if r.CompletedAt.After(last.CompletedAt) {
				last = r
			}
		}
		o.final[id] = last
	}
	for _, c := range sb.Calls() {
		switch c.API {
		case messages.APIVMSAddQualification:
			m := tagPattern.FindSubmatch(c.Body)
			if m == nil {
				t.Errorf("sandbox call %d (%s) carries no request id tag", c.Seq, c.API)
				continue
			}
			id := string(m[1])
			o.createCalls[id]++
			if c.Code == "" && c.HTTPStatus == 200 && !c.Fault {
				o.accepted[id] = true
			}
		case messages.APIDouyinGetClassAuth:
			o.readCalls++
		}
	}
	for _, r := range reqs {
		res, ok := o.final[r.id]
		if !ok {
			o.lost = append(o.lost, r.id)
			continue
		}
		key := string(res.Status)
		if res.Error != nil && res.Error.Class != "" {
			key += "/" + res.Error.Class
		}
		o.finalStatus[key]++
		if !r.creates() {
			continue
		}
		if o.createCalls[r.id] > 1 {
			o.filedTwice = append(o.filedTwice, fmt.Sprintf("%s (%d calls)", r.id, o.createCalls[r.id]))
		}
		if o.accepted[r.id] && res.Status != messages.StatusSucceeded {
			o.acceptedBad = append(o.acceptedBad, fmt.Sprintf("%s (%s)", r.id, key))
		}
		if o.createCalls[r.id] == 0 && res.Error != nil && res.Error.Class == messages.ClassAmbiguous {
			o.unsentAmbig = append(o.unsentAmbig, r.id)
		}
	}
	o.deadLetters = len(p.StreamMsgs(p.Streams.Dead))
	return o
}

// log prints the counts.
func (o *outcomes) log(t *testing.T) {
	t.Helper()
	creates, calls := 0, 0
	for _, n := range o.createCalls {
		creates++
		calls += n
	}
	statuses := make([]string, 0, len(o.finalStatus))
	for k, n := range o.finalStatus {
		statuses = append(statuses, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(statuses)
	t.Logf("published %d; result messages %d for %d ids (%d ids with more than one); final outcome per id: %s",
		o.published, o.results, len(o.final), o.multiResult, strings.Join(statuses, " "))
	t.Logf("vendor: %d create calls for %d ids, %d ids accepted, %d ids filed more than once; %d read calls",
		calls, creates, len(o.accepted), len(o.filedTwice), o.readCalls)
	t.Logf("lost %d; accepted but not succeeded %d; never sent but ambiguous %d; dead letters %d; left in the request stream %d (ack pending %d, pending %d, drained %v)",
		len(o.lost), len(o.acceptedBad), len(o.unsentAmbig), o.deadLetters, o.reqStreamMsg, o.ackPending, o.numPending, o.drained)
}

// check asserts the guarantees. The last two are broken by today's
// pipeline (defects 12 and 13 of issue 7) and are expected to fail until
// its rewrite lands.
func (o *outcomes) check(t *testing.T) {
	t.Helper()
	if len(o.lost) != 0 {
		t.Errorf("LOST: %d of %d requests have no result: %s", len(o.lost), o.published, head(o.lost))
	}
	if len(o.filedTwice) != 0 {
		t.Errorf("FILED TWICE: %d requests reached the vendor's create call more than once: %s", len(o.filedTwice), head(o.filedTwice))
	}
	if !o.drained {
		t.Errorf("STRANDED: %d messages left in the request stream, %d ack pending, %d pending", o.reqStreamMsg, o.ackPending, o.numPending)
	}
	if len(o.acceptedBad) != 0 {
		t.Errorf("ACCEPTED NOT SUCCEEDED (defect 12 of issue 7): %d requests the vendor accepted have a final result other than succeeded: %s",
			len(o.acceptedBad), head(o.acceptedBad))
	}
	if len(o.unsentAmbig) != 0 {
		t.Errorf("UNSENT AMBIGUOUS (defect 13 of issue 7): %d requests the vendor never saw have a final ambiguous result: %s",
			len(o.unsentAmbig), head(o.unsentAmbig))
	}
}

// head lists the first few of s.
func head(s []string) string {
	s = slices.Clone(s)
	sort.Strings(s)
	if len(s) > 10 {
		return strings.Join(s[:10], ", ") + fmt.Sprintf(", … (%d more)", len(s)-10)
	}
	return strings.Join(s, ", ")
}

// leftovers is what is still in the request stream and the shared
// consumer: stored messages, unacknowledged deliveries, undelivered
// messages (all ^0 / -1 when the stream cannot be asked right now).
func leftovers(p *filingtest.Pipeline) (msgs uint64, ackPending int, pending uint64) {
	info, err := tryStreamInfo(p.JS, p.Streams.Requests)
	if err != nil {
		return ^uint64(0), -1, ^uint64(0)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ci, err := p.Durable.Info(ctx)
	if err != nil {
		return info.State.Msgs, -1, ^uint64(0)
	}
	return info.State.Msgs, ci.NumAckPending, ci.NumPending
}
