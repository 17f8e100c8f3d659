package filing_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/files"
	"github.com/qualfile/qualfile/messages"
)

// bigSMSRequest is the SMS example whose business certificate is a data
// URI of about size bytes, offloaded to the harness's file store as the
// publisher does. It returns the envelope and the data URI.
func bigSMSRequest(t *testing.T, h *harness, id string, size int) ([]byte, string) {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(example(t, messages.APISMSApplySignatureIdent, id), &env); err != nil {
		t.Fatal(err)
	}
	content := "data:image/png;base64," + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("scan", size/4*3/4)))
	env["payload"].(map[string]any)["businessInfo"].(map[string]any)["businessCertificate"].(map[string]any)["fileContent"] = content
	payload, _ := json.Marshal(env["payload"])
	out, refs, err := files.Offload(context.Background(), fileStore(h), h.Streams.Files, id, payload, files.DefaultThreshold)
	if err != nil || len(refs) != 1 {
		t.Fatalf("Offload: %v (%d refs)", err, len(refs))
	}
	env["payload"] = json.RawMessage(out)
	data, _ := json.Marshal(env)
	return data, content
}

// A 5 MiB licence scan, far beyond the server's 1 MiB max_payload, is
// filed end to end: the request carries a reference, the consumer fetches
// and checks the file, the vendor gets the data URI, the audit trail shows
// its size and SHA-256 only, and the object is removed once the request
// succeeded.
func TestLargeFileEndToEnd(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	data, content := bigSMSRequest(t, h, "big-1", 5<<20)
	if len(data) > 8192 {
		t.Fatalf("the request is %d bytes: the file was not offloaded", len(data))
	}
	if n := h.NC.MaxPayload(); int64(len(content)) < n {
		t.Fatalf("the file (%d bytes) fits a message (max_payload %d): the test proves nothing", len(content), n)
	}
	h.publish(messages.APISMSApplySignatureIdent, "big-1", data)
	got := h.results(1, 30*time.Second)["big-1"]
	if got.Status != messages.StatusSucceeded {
		t.Fatalf("result %s %+v", got.Status, got.Error)
	}
	callBody := lastSMSCall(t, h)
	var body struct {
		BusinessInfo struct {
			BusinessCertificate struct {
				FileContent string `json:"fileContent"`
			} `json:"businessCertificate"`
		} `json:"businessInfo"`
	}
	if err := json.Unmarshal(callBody, &body); err != nil {
		t.Fatal(err)
	}
	if body.BusinessInfo.BusinessCertificate.FileContent != content {
		t.Errorf("the vendor got a fileContent of %d bytes, want the %d-byte file", len(body.BusinessInfo.BusinessCertificate.FileContent), len(content))
	}
	sum := sha256.Sum256([]byte(content))
	want := "[file: " + itoa(len(content)) + " bytes, sha256:" + hex.EncodeToString(sum[:]) + "]"
	received := h.audit("big-1")[0]
	if received.Event != messages.EventReceived || !strings.Contains(string(received.Payload), want) || strings.Contains(string(received.Payload), "obj://") {
		t.Errorf("received event payload %.300s: want %s", received.Payload, want)
	}
	waitGone(t, h)
}

// lastSMSCall is the body of the vendor's last SMS call.
func lastSMSCall(t *testing.T, h *harness) []byte {
	t.Helper()
	var body []byte
	for _, call := range h.sb.Calls() {
		if call.API == messages.APISMSApplySignatureIdent {
			body = call.Body
		}
	}
	if body == nil {
		t.Fatal("the vendor saw no SMS call")
	}
	return body
}

// fileStore is the default tenant's files, as the publisher hands them
// over.
func fileStore(h *harness) *files.Chunks {
	return &files.Chunks{JS: h.JS, Stream: h.Streams.Files, Subject: h.Subjects.Files()}
}

// fileChunks is how many chunks the file stream holds.
func fileChunks(t *testing.T, h *harness) uint64 {
	t.Helper()
	s, err := h.JS.Stream(context.Background(), h.Streams.Files)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// waitGone waits until the file stream is empty.
func waitGone(t *testing.T, h *harness) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for n := fileChunks(t, h); n != 0; n = fileChunks(t, h) {
		if time.Now().After(deadline) {
			t.Fatalf("the file stream still holds %d chunks after the outcome", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// A referenced file that is missing (or does not match its reference) is a
// rejected result naming the field; nothing is sent to the vendor.
func TestMissingFileIsRejected(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.run()
	data, _ := bigSMSRequest(t, h, "big-gone", 400<<10)
	s, err := h.JS.Stream(context.Background(), h.Streams.Files)
	if err == nil {
		err = s.Purge(context.Background())
	}
	if err != nil {
		t.Fatal(err)
	}
	h.publish(messages.APISMSApplySignatureIdent, "big-gone", data)
	got := h.results(1, 10*time.Second)["big-gone"]
	if got.Status != messages.StatusRejected || got.Error == nil || len(got.Error.Fields) != 1 ||
		got.Error.Fields[0].Field != "payload.businessInfo.businessCertificate.fileContent" || !strings.Contains(got.Error.Fields[0].Problem, "not found") {
		t.Fatalf("result %s %+v, want rejected naming the file's field", got.Status, got.Error)
	}
	if n := h.sb.CountCalls(messages.APISMSApplySignatureIdent); n != 0 {
		t.Errorf("the vendor saw %d calls", n)
	}
}
