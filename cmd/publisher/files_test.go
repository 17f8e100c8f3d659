package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// A request whose file is far beyond max_payload is published: the file
// goes to the file stream FILING_FILES in chunks and the message carries
// a reference that validates; sending it again makes the same reference,
// so the copy is dropped. Without the stream the publisher says what to
// do.
func TestSendOffloadsLargeFiles(t *testing.T) {
	js, _, url := setup(t)
	b, err := os.ReadFile(examplePath("sms.apply_signature_ident.json"))
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	env["id"] = "big-publish-1"
	content := "data:image/png;base64," + base64.StdEncoding.EncodeToString(make([]byte, 3<<20))
	env["payload"].(map[string]any)["businessInfo"].(map[string]any)["businessCertificate"].(map[string]any)["fileContent"] = content
	raw, _ := json.Marshal(env)
	path := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := js.DeleteStream(context.Background(), "FILING_FILES"); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, url, "", "send", "--api", "sms.apply_signature_ident", "--file", path)
	if code != 2 || !strings.Contains(errOut, "start the consumer once (it creates FILING_FILES)") {
		t.Fatalf("without the stream: %d %s", code, errOut)
	}
	if _, err := queue.EnsureStreams(context.Background(), js, queue.StreamsConfig{}); err != nil {
		t.Fatal(err)
	}
	for i, wantDup := range []bool{false, true} {
		code, out, errOut := cli(t, url, "", "send", "--api", "sms.apply_signature_ident", "--file", path)
		if code != 0 || !strings.Contains(errOut, "is stored as obj://FILING_FILES/") {
			t.Fatalf("send %d: %d %s %s", i, code, out, errOut)
		}
		var p published
		if err := json.Unmarshal([]byte(out), &p); err != nil || p.Duplicate != wantDup {
			t.Fatalf("send %d: %q, want duplicate %v", i, out, wantDup)
		}
	}
	s, _ := js.Stream(context.Background(), "FILING_REQUESTS")
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Data) > 8192 {
		t.Errorf("the message is %d bytes: the file is in it", len(m.Data))
	}
	req, err := messages.ParseRequest(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Validate(); err != nil {
		t.Fatalf("the published request does not validate: %v", err)
	}
	refs := req.FileRefs()
	if len(refs) != 1 || refs[0].File.FileContent.Ref.Size != int64(len(content)) {
		t.Fatalf("refs %+v", refs)
	}
	_, name, _ := refs[0].File.FileContent.Ref.Location()
	got, err := (&files.Chunks{JS: js, Stream: "FILING_FILES", Subject: "filing.file"}).Get(context.Background(), name, int64(len(content)))
	if err != nil || string(got) != content {
		t.Errorf("the stored file: %d bytes, %v; want the file", len(got), err)
	}
}

// TRACEPARENT in the environment (the W3C convention for tools) goes on
// the request message, so that the filing's spans join the caller's trace.
func TestSendCarriesTraceparent(t *testing.T) {
	js, _, url := setup(t)
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	var stdout, stderr strings.Builder
	env := map[string]string{"TRACEPARENT": tp}
	err := run(context.Background(), []string{"send", "--api", "vms.add_qualification", "--file", examplePath("vms.add_qualification.json"), "--nats-url", url},
		func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	if err != nil {
		t.Fatalf("send: %v %s", err, stderr.String())
	}
	s, _ := js.Stream(context.Background(), "FILING_REQUESTS")
	m, err := s.GetMsg(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Header.Get("traceparent"); got != tp {
		t.Errorf("traceparent %q, want %q", got, tp)
	}
}
