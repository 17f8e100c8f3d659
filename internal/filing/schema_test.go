package filing_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/qualfile/qualfile/internal/control"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// loadSchema compiles schemas/<name>.schema.json, formats asserted.
func loadSchema(tb testing.TB, name string) *jsonschema.Schema {
	tb.Helper()
	path := filepath.Join("..", "..", "schemas", name+".schema.json")
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	sch, err := c.Compile(path)
	if err != nil {
		tb.Fatalf("schema %s: %v", name, err)
	}
	return sch
}

// validate checks one JSON document against sch.
func validate(sch *jsonschema.Schema, data []byte) error {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return err
	}
	return sch.Validate(doc)
}

// TestMessagesMatchTheirSchemas: the example requests match
// schemas/request.schema.json, and every result and audit event the
// pipeline publishes for them (valid and invalid, of every api) matches
// schemas/result.schema.json and schemas/audit-event.schema.json, with
// schema_version 1. The schemas also refuse what breaks them.
func TestMessagesMatchTheirSchemas(t *testing.T) {
	reqSchema, resSchema, evSchema := loadSchema(t, "request"), loadSchema(t, "result"), loadSchema(t, "audit-event")
	h := newHarness(t, harnessOpts{})
	// One filing ends ambiguous (a dead replica's call), for an operator
	// to resolve: the resolution's result and event are checked too.
	e, _, err := h.led.Claim(context.Background(), "schema-ambiguous", messages.APIVMSAddQualification, "dead-replica")
	if err == nil {
		_, err = h.led.Transition(context.Background(), e, ledger.StateCalling, nil)
	}
	if err != nil {
		t.Fatal(err)
	}
	h.run()
	h.publish(messages.APIVMSAddQualification, "schema-ambiguous", example(t, messages.APIVMSAddQualification, "schema-ambiguous"))
	n := 1
	for _, api := range messages.APIs() {
		for _, dir := range []string{"", "invalid"} {
			b, err := os.ReadFile(filepath.Join("..", "..", "examples", dir, string(api)+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if dir == "" {
				if err := validate(reqSchema, b); err != nil {
					t.Errorf("examples/%s.json does not match the request schema: %v", api, err)
				}
			}
			if dir == "" {
				b = example(t, api, "schema-"+string(api))
			}
			h.publish(api, "schema-"+dir+string(api), b)
			n++
		}
	}
	h.results(n, 15*time.Second)
	rep, err := h.Order(control.ActionResolve, control.Order{RequestID: "schema-ambiguous", Decision: messages.DecisionFiled, Record: "QUA-1", Reason: "listed"})
	if err != nil || len(rep.Items) != 2 {
		t.Fatalf("resolve: %+v %v", rep, err)
	}
	n++ // the resolution's result

	results := h.StreamMsgs(h.Streams.Results)
	events := h.StreamMsgs(h.Streams.Audit)
	if len(results) < n || len(events) < 2*n {
		t.Fatalf("%d results and %d audit events for %d requests", len(results), len(events), n)
	}
	for _, m := range results {
		if err := validate(resSchema, m.Data); err != nil {
			t.Errorf("result on %s does not match its schema: %v\n%s", m.Subject, err, m.Data)
		}
	}
	for _, m := range events {
		if err := validate(evSchema, m.Data); err != nil {
			t.Errorf("audit event on %s does not match its schema: %v\n%s", m.Subject, err, m.Data)
		}
	}
	for _, bad := range []struct {
		sch  *jsonschema.Schema
		name string
		doc  string
	}{
		{resSchema, "a result without schema_version", `{"request_id":"a","api":"vms.add_qualification","account":"default","status":"succeeded","attempts":1,"received_at":"2026-01-02T15:04:05Z","completed_at":"2026-01-02T15:04:05Z"}`},
		{resSchema, "a failed result without an error", `{"schema_version":"1","request_id":"a","api":"vms.add_qualification","account":"default","status":"failed","attempts":1,"received_at":"2026-01-02T15:04:05Z","completed_at":"2026-01-02T15:04:05Z"}`},
		{evSchema, "an event of an unknown kind", `{"schema_version":"1","request_id":"a","api":"vms.add_qualification","event":"exploded","time":"2026-01-02T15:04:05Z"}`},
		{reqSchema, "a request with an unknown envelope field", `{"id":"a","api":"vms.add_qualification","payload":{},"QualificationEntity":"x"}`},
	} {
		if validate(bad.sch, []byte(bad.doc)) == nil {
			t.Errorf("%s matches its schema", bad.name)
		}
	}
}
