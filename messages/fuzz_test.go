package messages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/qualfile/qualfile/messages"
)

// FuzzRequest decodes and validates arbitrary bytes: it must never panic, and
// every outcome must be one of the three documented ones. Its seed corpus
// (the examples and some hostile inputs) runs with every `go test`.
func FuzzRequest(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "examples", "*.json"))
	more, _ := filepath.Glob(filepath.Join("..", "examples", "invalid", "*.json"))
	for _, name := range append(files, more...) {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"api":7}`, "{\"id\":\"\xff\"}",
		`{"id":"a","api":"douyin.add_role","payload":{"industry_role":2,"institution_role_info":{"institution_info":null}}}`,
		`{"id":"a","api":"sms.apply_signature_ident","payload":{"purpose":2,"powerOfAttorney":[null,{}]}}`,
		`{"id":"a","api":"vms.add_qualification","payload":{"QualificationScenarioInfoFormDOList":[null,1,"x",[]]}}`,
		`{"id":"a","api":"vms.update_qualification","payload":{"QualificationMainInfoFormDO":{"QualificationId":1e400}}}`,
		`{"id":"a","api":"douyin.get_class_auth","payload":{"industry_class":{"first_class":-0}},"metadata":{"":"x"}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := messages.ParseRequest(data)
		if err != nil {
			if !errors.Is(err, messages.ErrUndecodable) {
				t.Fatalf("ParseRequest error %v is not ErrUndecodable", err)
			}
			return
		}
		err = r.Validate()
		var ve *messages.ValidationError
		switch {
		case err == nil:
			if r.Typed() == nil {
				t.Fatal("valid request without a typed payload")
			}
			// The payload is decoded once, while its shape is checked:
			// the typed payload is what Go's decoder makes of it, and the
			// redaction is the one of the bytes.
			want := messages.NewPayload(r.API)
			if err := json.Unmarshal(r.Payload, want); err != nil {
				t.Fatalf("a valid payload does not decode: %v", err)
			}
			if !reflect.DeepEqual(r.Typed(), want) {
				t.Fatalf("typed payload\n%+v\nwant\n%+v", r.Typed(), want)
			}
			if got, want := r.RedactedPayload(), messages.Redact(r.Payload); !bytes.Equal(got, want) {
				t.Fatalf("redacted payload\n%s\nwant\n%s", got, want)
			}
		case errors.As(err, &ve):
			if len(ve.Fields) == 0 {
				t.Fatal("ValidationError without fields")
			}
			for _, fe := range ve.Fields {
				if fe.Field == "" || fe.Problem == "" {
					t.Fatalf("empty field or problem: %+v", fe)
				}
			}
		default:
			t.Fatalf("Validate returned %T %v", err, err)
		}
		if out := messages.Redact(data); !json.Valid(out) {
			t.Fatalf("Redact produced invalid JSON: %s", out)
		}
	})
}
