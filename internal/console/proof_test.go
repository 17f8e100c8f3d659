package console_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/messages"
)

// redigest recomputes a proof's digest as operator's (unexported) digest
// does: anyone holding a proof can, so it proves nothing by itself.
func redigest(p operator.Proof) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n%s\n", p.Format, strconv.Quote(p.Prefix), strconv.Quote(p.Tenant), strconv.Quote(p.RequestID))
	for _, name := range slices.Sorted(maps.Keys(p.Through)) {
		fmt.Fprintf(h, "through %s %d\n", name, p.Through[name])
	}
	for _, m := range p.Messages {
		fmt.Fprintf(h, "%s %d %s %s\n", m.Stream, m.Seq, strconv.Quote(m.Subject), m.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func exportProof(t *testing.T, b *browser, id string) operator.Proof {
	t.Helper()
	code, _, body := b.do("GET", "/proof?id="+url.QueryEscape(id), nil, nil)
	if code != http.StatusOK {
		t.Fatalf("proof of %s: %d %s", id, code, body)
	}
	var p operator.Proof
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

func verify(t *testing.T, d *deployment, p operator.Proof) []operator.Problem {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := operator.VerifyProof(ctx, d.p.JS, p)
	if err != nil {
		t.Fatal(err)
	}
	return v.Problems
}

// TestAForgedProofDoesNotVerify: a filing that was ambiguous and then
// resolved by an operator as abandoned. Its proof is altered to show the
// superseded outcome (or another filing's); VerifyProof refuses every
// alteration, the digest recomputed or not.
func TestAForgedProofDoesNotVerify(t *testing.T) {
	d := deploy(t)
	alice := d.browser(t)
	csrf := alice.signIn("alice", "alice-pw")
	d.ambiguous(t, alice, "amb-f")
	order := url.Values{"csrf": {csrf}, "action": {"resolve"}, "id": {"amb-f"}, "decision": {"abandoned"}, "reason": {"vendor says no"}, "confirm": {"yes"}}
	if code, _, done := alice.do("POST", "/act", order, nil); code != http.StatusOK || !strings.Contains(done, "resolve") {
		t.Fatalf("resolve: %d %s", code, done)
	}
	filingtest.WaitFor(t, 10*time.Second, "two results of amb-f", func() bool { return len(d.p.Results()["amb-f"]) >= 2 })
	d.p.Publish(messages.APIVMSAddQualification, "ok-f", filingtest.Example(t, messages.APIVMSAddQualification, "ok-f"))
	filingtest.WaitFor(t, 10*time.Second, "ok-f's result", func() bool { return len(d.p.Results()["ok-f"]) >= 1 })

	genuine := exportProof(t, alice, "amb-f")
	if probs := verify(t, d, genuine); len(probs) != 0 {
		t.Fatalf("the genuine proof: %+v", probs)
	}
	if genuine.Outcome == nil || genuine.Outcome.Resolution == nil {
		t.Fatalf("the genuine outcome is not the resolution: %+v", genuine.Outcome)
	}

	t.Run("the resolution's body dropped, the superseded outcome stated, digest untouched", func(t *testing.T) {
		p := genuine
		p.Messages = append([]operator.StoredMessage(nil), genuine.Messages...)
		var earlier *messages.Result
		for i, m := range p.Messages {
			if !strings.HasSuffix(m.Stream, "_RESULTS") {
				continue
			}
			var r messages.Result
			_ = json.Unmarshal(m.Data, &r)
			if r.Resolution != nil {
				p.Messages[i].Data = nil // only its sha256 is checked then
			} else {
				earlier = &r
			}
		}
		p.Outcome = earlier
		if p.Digest != redigest(p) {
			t.Fatal("test bug: the digest should not even change")
		}
		if probs := verify(t, d, p); len(probs) == 0 {
			t.Errorf("VERIFIED: a proof stating the superseded outcome %s/%s (the filing was resolved abandoned)", earlier.Status, earlier.Error.Class)
		}
	})
	t.Run("the resolution's result left out, digest recomputed", func(t *testing.T) {
		p := genuine
		p.Messages = nil
		var earlier *messages.Result
		for _, m := range genuine.Messages {
			if strings.HasSuffix(m.Stream, "_RESULTS") {
				var r messages.Result
				_ = json.Unmarshal(m.Data, &r)
				if r.Resolution != nil {
					continue
				}
				earlier = &r
			}
			p.Messages = append(p.Messages, m)
		}
		p.Outcome = earlier
		p.Digest = redigest(p)
		if probs := verify(t, d, p); len(probs) == 0 {
			t.Errorf("VERIFIED: a proof with a message left out and the superseded outcome")
		}
	})
	t.Run("the digest changed", func(t *testing.T) {
		p := genuine
		p.Digest = strings.Repeat("0", 64)
		if probs := verify(t, d, p); len(probs) == 0 {
			t.Errorf("VERIFIED: a proof whose digest is not its own")
		}
	})
	t.Run("an event's body dropped", func(t *testing.T) {
		p := genuine
		p.Messages = append([]operator.StoredMessage(nil), genuine.Messages...)
		p.Messages[0].Data = nil
		if probs := verify(t, d, p); len(probs) == 0 {
			t.Errorf("VERIFIED: a proof holding an event by its digest alone")
		}
	})
	t.Run("another filing's event added", func(t *testing.T) {
		other := exportProof(t, alice, "ok-f")
		p := genuine
		p.Messages = append(append([]operator.StoredMessage(nil), genuine.Messages...), other.Messages[0])
		p.Digest = redigest(p)
		if probs := verify(t, d, p); len(probs) == 0 {
			t.Errorf("VERIFIED: amb-f's proof holding an event of ok-f")
		}
	})
	t.Run("another filing's proof relabelled", func(t *testing.T) {
		p := exportProof(t, alice, "ok-f")
		p.RequestID = "amb-f"
		p.Digest = redigest(p)
		if probs := verify(t, d, p); len(probs) == 0 {
			t.Errorf("VERIFIED: ok-f's messages as the proof of amb-f, outcome %s", p.Outcome.Status)
		}
	})
	t.Run("another filing's result added", func(t *testing.T) {
		other := exportProof(t, alice, "ok-f")
		p := genuine
		p.Messages = append([]operator.StoredMessage(nil), genuine.Messages...)
		for _, m := range other.Messages {
			if strings.HasSuffix(m.Stream, "_RESULTS") {
				p.Messages = append(p.Messages, m)
			}
		}
		p.Outcome = other.Outcome
		p.Digest = redigest(p)
		if probs := verify(t, d, p); len(probs) == 0 {
			t.Errorf("VERIFIED: amb-f's proof stating ok-f's outcome %s", p.Outcome.Status)
		}
	})
	t.Run("read to an earlier point, the resolution left out", func(t *testing.T) {
		// A true proof of the filing as it was before the resolution:
		// verified, and said to be older than what the streams hold now.
		p := genuine
		p.Messages = nil
		p.Through = maps.Clone(genuine.Through)
		var earlier *messages.Result
		cut := uint64(0)
		for _, m := range genuine.Messages {
			if strings.HasSuffix(m.Stream, "_RESULTS") {
				var r messages.Result
				_ = json.Unmarshal(m.Data, &r)
				if r.Resolution != nil {
					cut = m.Seq
					continue
				}
				earlier = &r
			}
		}
		p.Through[d.p.Streams.Results] = cut - 1
		for _, m := range genuine.Messages {
			if strings.HasSuffix(m.Stream, "_RESULTS") && m.Seq >= cut || m.Stream == d.p.Streams.Audit && m.Seq > p.Through[d.p.Streams.Audit] {
				continue
			}
			p.Messages = append(p.Messages, m)
		}
		p.Outcome = earlier
		p.Digest = redigest(p)
		v, err := operator.VerifyProof(context.Background(), d.p.JS, p)
		if err != nil || len(v.Problems) != 0 || v.Since == 0 || v.Current == nil || v.Current.Resolution == nil {
			t.Errorf("an earlier proof: %+v %v; want it said to be older than the resolution", v, err)
		}
	})
}
