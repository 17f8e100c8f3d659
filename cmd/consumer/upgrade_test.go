package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/sandbox"
	"github.com/qualfile/qualfile/messages"
)

// previousRelease is the commit the last release was built from: the one
// before the roles, tenants and operator actions, whose ledger entries are
// unscoped, whose tokens are stored in the clear and whose subjects carry
// no tenant.
const previousRelease = "538481fe6084dffd355debb250b8725b542016c3"

// previousBinary builds the consumer of previousRelease from this
// repository's history.
func previousBinary(t *testing.T) string {
	t.Helper()
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("the previous release is built from this repository's history: %v", err)
	}
	dir := t.TempDir()
	archive := exec.Command("sh", "-c", fmt.Sprintf("git -C %q archive %s | tar -x -C %q", strings.TrimSpace(string(root)), previousRelease, dir))
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", previousRelease, err, out)
	}
	path := filepath.Join(dir, "consumer-previous")
	build := exec.Command("go", "build", "-o", path, "./cmd/consumer")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the previous release: %v\n%s", err, out)
	}
	return path
}

// TestUpgradeFromThePreviousRelease upgrades a running deployment from
// the previous release's binary with requests in flight, the way the
// Kubernetes manifest does (Recreate: the old replica is stopped, SIGTERM,
// before the new one starts): every request has one outcome, none reaches
// the vendor twice, the new version answers from the old ledger, and the
// Douyin token the old one stored in the clear is fetched again, sealed.
func TestUpgradeFromThePreviousRelease(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs two versions of the consumer binary")
	}
	const perAPI = 40
	old, cur := previousBinary(t), consumerBinary(t)
	srv := natstest.Server(t)
	sb := startSandbox(t)
	sb.Inject(sandbox.Fault{Latency: 30 * time.Millisecond}) // calls in flight at the stop
	cfgPath := writeConfig(t, "", sb.URL())
	env := sandboxEnv("QUALFILE_NATS_URL="+srv.ClientURL(), "QUALFILE_CONCURRENCY=8")
	start := func(name, bin string) (*exec.Cmd, *syncBuffer) {
		return startConsumer(t, name, bin, env, "--config", cfgPath, "--admin-listen", natstest.FreeAddr(t))
	}
	previous, previousOut := start("the previous release", old)

	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	requests := killRequests(t, perAPI)
	apiOf := map[string]messages.API{}
	for i := range perAPI {
		for _, api := range messages.APIs() {
			r := requests[api][i]
			apiOf[r.id] = api
			if _, err := js.PublishAsync("filing.request."+string(api), r.data, jetstream.WithMsgID(r.id)); err != nil {
				t.Fatal(err)
			}
		}
	}
	<-js.PublishAsyncComplete()
	n := len(apiOf)
	filed := func() int { return sb.CountCalls("") - sb.CountCalls(sandbox.TokenAPI) }
	for deadline := time.Now().Add(30 * time.Second); filed() < n/3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls within 30 s\n%s", filed(), previousOut.String())
		}
	}
	if err := previous.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = previous.Wait()
	byOld := len(readLedger(t, js))
	// A copy of a request the previous release filed, sent again past the
	// duplicate window (another message id): answered from the old ledger.
	var again string
	for _, e := range readLedger(t, js) {
		if e.State == ledger.StateDone && e.Result != nil && e.Result.Status == messages.StatusSucceeded && !e.API.Resendable() {
			again = e.RequestID
			break
		}
	}
	for _, r := range requests[apiOf[again]] {
		if r.id == again {
			if _, err := js.Publish(t.Context(), "filing.request."+string(apiOf[again]), r.data, jetstream.WithMsgID(again+"-again")); err != nil {
				t.Fatal(err)
			}
		}
	}
	_, currentOut := start("this version", cur)

	var byID map[string][]messages.Result
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		byID = map[string][]messages.Result{}
		for _, r := range readAllResults(t, js) {
			byID[r.RequestID] = append(byID[r.RequestID], r)
		}
		msgs, ackPending, pending := requestBacklog(t, js)
		if len(byID) >= n && msgs == 0 && ackPending == 0 && pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d requests have a result 60 s after the upgrade\n%s", len(byID), n, currentOut.String())
		}
	}
	t.Logf("the previous release had seen %d of %d requests when it stopped; this version finished the rest", byOld, n)
	if byOld == 0 || byOld >= n {
		t.Fatalf("the previous release saw %d of %d requests: the test proves nothing", byOld, n)
	}
	calls := map[string]int{}
	for _, c := range sb.Calls() {
		if id := killIDPattern.FindString(string(c.Body)); id != "" && c.API == apiOf[id] { // not the reads of a reconciliation's baseline
			calls[id]++
		}
	}
	for id, api := range apiOf {
		rs := byID[id]
		final := rs[len(rs)-1]
		if final.Status != messages.StatusSucceeded {
			t.Errorf("%s: %s %+v", id, final.Status, final.Error)
		}
		if calls[id] != 1 && !api.Resendable() {
			t.Errorf("%s (%s) reached the vendor %d times", id, api, calls[id])
		}
		if len(rs) != 1 {
			t.Errorf("%s has %d results", id, len(rs))
		}
	}
	if !strings.Contains(currentOut.String(), "a stored Douyin token cannot be read") {
		t.Errorf("this version did not fetch the token the previous release stored in the clear again\n%s", currentOut.String())
	}
	dup := 0
	for _, m := range readAllAudit(t, js) {
		if m.RequestID == again && m.Event == messages.EventDuplicate {
			dup++
		}
	}
	if again == "" || dup != 1 {
		t.Errorf("the copy of %q the previous release filed: %d duplicate events, want 1", again, dup)
	}
}
