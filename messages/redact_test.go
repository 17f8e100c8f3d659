package messages_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/qualfile/qualfile/messages"
)

func TestRedactExamples(t *testing.T) {
	// Every value below appears in an example and must not survive redaction.
	secrets := []string{
		"110101199003078515", "110101199204126673", "110101199512301234", "320102199001011234", // ID numbers
		"13111112222", "13800138000", "13900139000", // phone numbers
		"张三", "李四", "王五", "花玲玲", // names
		"iVBORw0KGgo", // file content
	}
	for _, api := range messages.APIs() {
		t.Run(string(api), func(t *testing.T) {
			out := string(messages.Redact(mustJSON(t, exampleTree(t, string(api)))))
			for _, s := range secrets {
				if strings.Contains(out, s) {
					t.Errorf("redacted %s still contains %q:\n%s", api, s, out)
				}
			}
			if !strings.Contains(out, `"api":"`+string(api)+`"`) {
				t.Errorf("redaction lost non-sensitive fields: %s", out)
			}
		})
	}
}

func TestRedactRules(t *testing.T) {
	content := "data:image/png;base64,aGVsbG8="
	sum := sha256.Sum256([]byte(content))
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"id card keeps last 4", `{"IdCardNumber":"110101199204126673"}`, `{"IdCardNumber":"**************6673"}`},
		{"short id fully masked", `{"personIDCard":"vFXKH"}`, `{"personIDCard":"*****"}`},
		{"phone keeps last 4", `{"personMobile":"13800138000"}`, `{"personMobile":"*******8000"}`},
		{"name", `{"LegalRepresentativeName":"张三"}`, `{"LegalRepresentativeName":"[redacted]"}`},
		{"douyin employee name", `{"employee_material":{"name":"花玲玲","id_number":"320102199001011234"}}`, `{"employee_material":{"id_number":"**************1234","name":"[redacted]"}}`},
		{"file content", `{"fileContent":"` + content + `","fileSuffix":"png"}`, `{"fileContent":"[file: 30 bytes, sha256:` + hex.EncodeToString(sum[:]) + `]","fileSuffix":"png"}`},
		{"token", `{"access_token":"0801121846","appid":"tt1"}`, `{"access_token":"[redacted]","appid":"tt1"}`},
		{"secret", `{"secret":"s3cr3t"}`, `{"secret":"[redacted]"}`},
		{"non-string name", `{"Name":{"first":"三"}}`, `{"Name":"[redacted]"}`},
		{"nested arrays", `{"list":[{"personName":"王五"}]}`, `{"list":[{"personName":"[redacted]"}]}`},
		{"big numbers kept", `{"id":9007199254740993}`, `{"id":9007199254740993}`},
		{"not json", `{"personName":"王五"`, `"[redacted: 22 bytes, not JSON]"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(messages.Redact([]byte(tt.in))); got != tt.want {
				t.Fatalf("Redact(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}
