package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// TestAnAuditorListsExportsAndVerifies: with the auditor's permissions
// on a real server, `list` finds filings by status and merchant, `proof`
// exports one, and `verify` accepts it as exported and refuses it changed.
func TestAnAuditorListsExportsAndVerifies(t *testing.T) {
	s := messages.Subjects{}
	consumer, auditor := roles.Grantee{Role: roles.Consumer}, roles.Grantee{Role: roles.Auditor}
	as := permsServer(t, s, []roles.Grantee{consumer, auditor}, "permissions", "--role", "consumer", "--role", "auditor")
	nc, _ := connectAs(t, as(consumer), roles.Consumer, s)
	p := filingtest.New(t, filingtest.Options{NC: nc, Owner: "auditing"})
	p.Run()
	p.Publish(messages.APIVMSAddQualification, "ok-1", filingtest.Example(t, messages.APIVMSAddQualification, "ok-1"))
	p.Publish(messages.APISMSApplySignatureIdent, "bad-1", []byte(`{"id":"bad-1","api":"sms.apply_signature_ident","payload":{}}`))
	p.WaitResults(2, 20*time.Second)
	url := as(auditor)
	cache := filepath.Join(t.TempDir(), "list.db")

	code, out, errOut := cli(t, url, "", "list", "--cache", cache, "--output", "json")
	var listed struct {
		Filings []struct {
			RequestID string `json:"request_id"`
			Status    string `json:"status"`
			Record    string `json:"record"`
		} `json:"filings"`
		Counts map[string]int `json:"counts"`
	}
	if err := json.Unmarshal([]byte(out), &listed); code != 0 || err != nil || len(listed.Filings) != 2 || listed.Counts["succeeded"] != 1 || listed.Counts["rejected"] != 1 {
		t.Fatalf("list: %d %s %s", code, out, errOut)
	}
	code, out, errOut = cli(t, url, "", "list", "--cache", cache, "--q", "m-1001")
	if code != 0 || !strings.Contains(out, "ok-1") || strings.Contains(out, "bad-1") || !strings.Contains(out, "1 listed;") {
		t.Fatalf("list by the merchant: %d %s %s", code, out, errOut)
	}
	if code, _, errOut = cli(t, url, "", "list", "--cache", cache, "--status", "done"); code != 2 || !strings.Contains(errOut, "status") {
		t.Fatalf("list --status done: %d %s", code, errOut)
	}

	code, out, errOut = cli(t, url, "", "proof", "--id", "ok-1")
	if code != 0 {
		t.Fatalf("proof: %d %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "proof.json")
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut = cli(t, url, "", "verify", "--file", file); code != 0 || !strings.HasPrefix(out, "verified") {
		t.Fatalf("verify: %d %s %s", code, out, errOut)
	}
	var proof operator.Proof
	_ = json.Unmarshal([]byte(readFile(t, file)), &proof)

	for name, change := range map[string]func(*operator.Proof){
		"an outcome changed in a message": func(p *operator.Proof) {
			for i, m := range p.Messages {
				if m.Stream == "FILING_RESULTS" {
					p.Messages[i].Data = json.RawMessage(strings.Replace(string(m.Data), `"succeeded"`, `"failed"`, 1))
				}
			}
		},
		"an event changed": func(p *operator.Proof) {
			p.Messages[0].Data = json.RawMessage(strings.Replace(string(p.Messages[0].Data), `"received"`, `"rejected"`, 1))
		},
		"a message left out": func(p *operator.Proof) { p.Messages = p.Messages[1:] },
		"the outcome changed": func(p *operator.Proof) {
			o := *p.Outcome
			o.Status = messages.StatusFailed
			p.Outcome = &o
		},
		"a sequence changed": func(p *operator.Proof) { p.Messages[0].Seq += 1000; p.Digest = "" },
	} {
		t.Run(name, func(t *testing.T) {
			changed := proof
			changed.Messages = append([]operator.StoredMessage(nil), proof.Messages...)
			change(&changed)
			data, _ := json.Marshal(changed)
			f := filepath.Join(t.TempDir(), "changed.json")
			_ = os.WriteFile(f, data, 0o600)
			if code, out, _ := cli(t, url, "", "verify", "--file", f); code != 1 || !strings.Contains(out, "NOT verified") {
				t.Fatalf("verify a changed proof: %d %s", code, out)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
