package messages_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/qualfile/qualfile/messages"
)

// A file held in the object store: the request validates, FileRefs names
// it, the redaction shows its size and SHA-256 as it shows an inline file,
// and once fetched the data URI is what goes to the vendor.
func TestFileReference(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	env := exampleTree(t, string(messages.APISMSApplySignatureIdent))
	cert := env["payload"].(map[string]any)["businessInfo"].(map[string]any)["businessCertificate"].(map[string]any)
	cert["fileContent"] = map[string]any{"$ref": "obj://FILING_FILES/" + sum, "sha256": sum, "size": 5242880}
	raw := mustJSON(t, env)
	req, err := messages.ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := req.Validate(); err != nil {
		t.Fatalf("a request with a file reference: %v", err)
	}
	refs := req.FileRefs()
	if len(refs) != 1 || refs[0].Path != "payload.businessInfo.businessCertificate" || refs[0].File.FileContent.Ref.Size != 5242880 {
		t.Fatalf("FileRefs = %+v", refs)
	}
	bucket, name, ok := refs[0].File.FileContent.Ref.Location()
	if !ok || bucket != "FILING_FILES" || name != sum {
		t.Errorf("Location = %q %q %v", bucket, name, ok)
	}
	red := string(messages.Redact(req.Payload))
	if want := "[file: 5242880 bytes, sha256:" + sum + "]"; !strings.Contains(red, want) || strings.Contains(red, "obj://") {
		t.Errorf("redacted %s: want %s and no reference", red, want)
	}
	refs[0].File.FileContent.Data = "data:image/png;base64,aGVsbG8="
	body, err := json.Marshal(req.Typed())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), `"fileContent":"data:image/png;base64,aGVsbG8="`) {
		t.Errorf("the vendor's body %s: want the fetched data URI", body)
	}
	if len(req.FileRefs()) != 0 {
		t.Error("a fetched file is still listed as a reference")
	}
}
