package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/messages"
)

// TestSingleServerEndToEnd files each of the five examples through one
// containerised nats-server with JetStream, and an invalid example, which is
// rejected without an upstream call.
func TestSingleServerEndToEnd(t *testing.T) {
	n := startServer(t)
	nc := connect(t, "single", n.url)
	waitJetStream(t, newJetStream(t, nc.Conn), 30*time.Second)
	p := newPipeline(t, filingtest.Options{NC: nc.Conn})
	p.Run()

	for _, api := range messages.APIs() {
		id := "e2e-" + string(api)
		p.Publish(api, id, filingtest.Example(t, api, id))
	}
	invalidAPI := messages.APIVMSAddQualification
	invalid, err := os.ReadFile(filepath.Join(filingtest.ExamplesDir(), "invalid", string(invalidAPI)+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(invalid, &env); err != nil {
		t.Fatal(err)
	}
	p.Publish(invalidAPI, "e2e-invalid", invalid)

	want := len(messages.APIs()) + 1
	p.WaitResults(want, 30*time.Second)
	got := p.Results()
	if len(got) != want {
		t.Errorf("results for %d request ids, want %d: %v", len(got), want, got)
	}
	for _, api := range messages.APIs() {
		rs := got["e2e-"+string(api)]
		if len(rs) != 1 {
			t.Errorf("%s: %d results, want 1", api, len(rs))
			continue
		}
		r := rs[0]
		if r.Status != messages.StatusSucceeded || r.API != api || r.Attempts != 1 || r.UpstreamRequestID == "" || len(r.Result) == 0 {
			t.Errorf("%s: %+v (error %+v)", api, r, r.Error)
		}
		if n := p.Sandbox.CountCalls(api); n != 1 {
			t.Errorf("%s: the sandbox saw %d calls, want 1", api, n)
		}
	}
	if no := string(got["e2e-vms.add_qualification"][0].Result); !strings.Contains(no, `"QualificationNo":"QUA`) {
		t.Errorf("vms add result %s", no)
	}
	if id := string(got["e2e-sms.apply_signature_ident"][0].Result); id != `{"id":9007199254740993,"id_string":"9007199254740993"}` {
		t.Errorf("sms result %s, want the exact 64-bit id", id)
	}

	rs := got[env.ID]
	if len(rs) != 1 {
		t.Fatalf("invalid example (id %q): %d results, want 1", env.ID, len(rs))
	}
	r := rs[0]
	if r.Status != messages.StatusRejected || r.Error == nil || r.Error.Class != messages.ClassInvalid || len(r.Error.Fields) == 0 {
		t.Fatalf("invalid example: %+v (error %+v)", r, r.Error)
	}
	t.Logf("invalid example rejected with %d field problems", len(r.Error.Fields))
	// One call per valid example and none for the invalid one.
	if n := p.Sandbox.CountCalls(invalidAPI); n != 1 {
		t.Errorf("%s: the sandbox saw %d calls, want 1 (the invalid request must not be sent)", invalidAPI, n)
	}
}
