package console_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/operator"
	"github.com/qualfile/qualfile/messages"
)

// chromium is the path of a Chromium to drive, or "".
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// screenshots is where the browser test saves what it saw:
// $QUALFILE_SCREENSHOTS, or the test's own folder.
func screenshots(t *testing.T) string {
	dir := os.Getenv("QUALFILE_SCREENSHOTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestInARealBrowser drives headless Chromium as a compliance officer and
// an operator would: sign in, search by the merchant's name, read a
// filing's timeline in their own time zone, replay a dead letter with a
// reason behind a confirmation, export the proof; and saves a screenshot
// of each page.
func TestInARealBrowser(t *testing.T) {
	path := chromium()
	if path == "" {
		t.Skip("no Chromium installed (Debian: apt-get install chromium); .ci/run installs it")
	}
	d := deploy(t)
	for _, api := range []messages.API{messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent, messages.APIDouyinAddRole} {
		id := "ok-" + strings.ReplaceAll(string(api), ".", "-")
		var req map[string]any
		_ = json.Unmarshal(filingtest.Example(t, api, id), &req)
		if api == messages.APIVMSAddQualification {
			req["metadata"] = map[string]string{"merchant": "杭州某某科技有限公司"}
		}
		data, _ := json.Marshal(req)
		d.p.Publish(api, id, data)
	}
	d.p.Publish(messages.APIVMSAddQualification, "bad-1", []byte(`{"id":"bad-1","api":"vms.add_qualification","payload":{"QualificationName":"x"}}`))
	http := d.browser(t)
	http.signIn("alice", "alice-pw")
	d.ambiguous(t, http, "amb-9")
	d.ambiguous(t, http, "down-1")

	shots := screenshots(t)
	downloads := t.TempDir()
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.Flag("lang", "zh-CN"), chromedp.WindowSize(1400, 1000))...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 30*time.Second)
	defer cancelT()

	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644)
		})
	}
	base := d.srv.URL
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("the text of %s: %v", sel, err)
		}
		return s
	}
	run("set the zone and downloads",
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Shanghai"})
			return err
		}),
		chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
			_, err := chromedp.Call(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
				Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
			return err
		}))

	run("sign in",
		chromedp.Navigate(base+"/filings?lang=zh"),
		chromedp.WaitVisible(chromedp.ID("signin")),
		shot("1-signin"))
	if got := text("h1"); got != "登录" {
		t.Fatalf("the sign-in page asked for in Chinese: %q", got)
	}
	run("sign in",
		chromedp.SendKeys(chromedp.ID("name"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), "alice-pw"),
		chromedp.Click(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.ID("filings")))
	if got := text("header .who"); !strings.Contains(got, "alice") || !strings.Contains(got, "操作员") {
		t.Fatalf("signed in as %q", got)
	}
	shot1 := text("#filings")
	if !strings.Contains(shot1, "ok-vms-add_qualification") || !strings.Contains(shot1, "bad-1") {
		t.Fatalf("the list: %s", shot1)
	}
	run("the list", shot("2-filings"))

	run("search by the merchant's name",
		chromedp.SendKeys(chromedp.ID("q"), "杭州某某"),
		chromedp.Click(chromedp.ID("search")),
		chromedp.WaitVisible(chromedp.ID("filings")),
		shot("3-search"))
	if got := text("#filings tbody"); !strings.Contains(got, "ok-vms-add_qualification") || strings.Count(got, "\n") != 0 {
		t.Fatalf("the search found: %s", got)
	}

	run("a filing's timeline",
		chromedp.Navigate(base+"/filings"),
		chromedp.Click(chromedp.Search(`//a[text()="ok-vms-add_qualification"]`)),
		chromedp.WaitVisible(chromedp.ID("timeline")),
		shot("4-timeline"))
	timeline := text("#timeline")
	for _, want := range []string{"已接收", "调用", "成功"} {
		if !strings.Contains(timeline, want) {
			t.Fatalf("the timeline lacks %s: %s", want, timeline)
		}
	}
	// Times in the viewer's zone (Shanghai), UTC on hover.
	shown := text("#timeline time")
	title, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS("#timeline time"), "title"))
	if err != nil || !strings.HasSuffix(title.Value, "UTC") || strings.HasSuffix(shown, "UTC") || !strings.Contains(shown, "GMT+8") && !strings.Contains(shown, "CST") {
		t.Fatalf("a time shown %q, its title %+v (%v)", shown, title, err)
	}
	if record := text("#record"); !strings.HasPrefix(record, "QUA") {
		t.Fatalf("the record: %q", record)
	}

	run("export the proof",
		chromedp.Click(chromedp.ID("proof")))
	var proofFile string
	filingtest.WaitFor(t, 10*time.Second, "the proof downloaded", func() bool {
		m, _ := filepath.Glob(filepath.Join(downloads, "proof-*.json"))
		if len(m) == 1 {
			proofFile = m[0]
		}
		return proofFile != ""
	})
	data, _ := os.ReadFile(proofFile)
	var proof operator.Proof
	if err := json.Unmarshal(data, &proof); err != nil || proof.RequestID != "ok-vms-add_qualification" || len(proof.Messages) < 4 {
		t.Fatalf("the proof: %v %s", err, data)
	}
	v, err := operator.VerifyProof(context.Background(), d.p.JS, proof)
	if err != nil || len(v.Problems) != 0 {
		t.Fatalf("the proof does not verify: %+v %v", v, err)
	}

	run("replay a dead letter with a reason",
		chromedp.Navigate(base+"/work"),
		chromedp.WaitVisible(chromedp.ID("dead")),
		shot("5-work"),
		chromedp.SendKeys(chromedp.CSS(`#dead tr[data-id="down-1"] input[name=reason]`), "供应商已恢复，重新投递"),
		chromedp.Click(chromedp.CSS(`#dead tr[data-id="down-1"] button.replay`)),
		chromedp.WaitVisible(chromedp.ID("confirm")),
		shot("6-confirm"),
		chromedp.Click(chromedp.ID("confirm")),
		chromedp.WaitVisible(chromedp.ID("report")),
		shot("7-done"))
	if got := text("#report"); !strings.Contains(got, "down-1") || !strings.Contains(got, "已完成") {
		t.Fatalf("the report: %s", got)
	}
	filingtest.WaitFor(t, 10*time.Second, "the replay on the record", func() bool {
		for _, ev := range d.p.Audit("down-1") {
			if ev.Event == messages.EventReplayed && ev.Operator == "alice" && ev.Reason == "供应商已恢复，重新投递" {
				return true
			}
		}
		return false
	})
	run("the filing shows who replayed it and why",
		chromedp.Navigate(base+"/filing?id=down-1"),
		chromedp.WaitVisible(chromedp.ID("timeline")),
		shot("8-replayed"))
	if got := text("#timeline"); !strings.Contains(got, "alice: 供应商已恢复，重新投递") {
		t.Fatalf("the timeline after the replay: %s", got)
	}
	run("the overview, in English",
		chromedp.Navigate(base+"/overview?lang=en"),
		chromedp.WaitVisible(chromedp.ID("apis")),
		shot("9-overview"))
	t.Logf("screenshots in %s", shots)
}
