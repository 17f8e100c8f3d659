package readmodel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/internal/readmodel"
	"github.com/qualfile/qualfile/messages"
)

// serverEnv makes the test binary a NATS server (for the benchmark, so
// that the figures of memory are the model's alone).
const serverEnv = "READMODEL_BENCH_SERVER_DIR"

func TestMain(m *testing.M) {
	if dir := os.Getenv(serverEnv); dir != "" {
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoSigs: true, NoLog: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		s.Start()
		if !s.ReadyForConnections(10 * time.Second) {
			os.Exit(1)
		}
		fmt.Println(s.ClientURL())
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the benchmark closes stdin
		s.Shutdown()
		return
	}
	os.Exit(m.Run())
}

// BenchmarkMillion fills the streams with READMODEL_FILINGS results (a
// million by default), builds the model from them and prints how fast it
// was built, how long each filtered page and count takes, how soon a new
// result is searchable, and the model's size on disk and memory:
//
//	go test -run '^$' -bench Million -benchtime 1x ./internal/readmodel/
func BenchmarkMillion(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("READMODEL_FILINGS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for b.Loop() {
		million(b, n)
	}
}

func million(b *testing.B, n int) {
	url := serverProcess(b)
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	end := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		r := benchResult(i, n, end)
		data, _ := json.Marshal(r)
		if _, err := js.PublishAsync(s.For(r.Tenant).ResultFor(r.API, r.RequestID), data); err != nil {
			b.Fatal(err)
		}
		if i%4096 == 4095 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	b.Logf("published %d results in %s", n, time.Since(start).Round(time.Millisecond))

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := open(b, "model.db")
	start = time.Now()
	stop := follow(b, m, js)
	for applied(b, m) < n {
		time.Sleep(100 * time.Millisecond)
	}
	built := time.Since(start)
	b.ReportMetric(float64(n)/built.Seconds(), "built_filings/s")

	// Filtered pages and counts, each asked 20 times: the slowest.
	ambiguous := benchResult(ambiguousEvery*7, n, end)
	vms := benchResult(20, n, end)
	queries := []struct {
		name string
		f    readmodel.Filter
	}{
		{"first page", readmodel.Filter{}},
		{"12 ambiguous", readmodel.Filter{Status: readmodel.StatusAmbiguous}},
		{"failed sms", readmodel.Filter{Status: "failed", API: messages.APISMSApplySignatureIdent}},
		{"acme rejected", readmodel.Filter{Tenant: "acme", Status: "rejected"}},
		{"merchant", readmodel.Filter{Query: ambiguous.Metadata["merchant"]}},
		{"merchant prefix", readmodel.Filter{Query: "杭州某某科技有限公司12"}},
		{"record", readmodel.Filter{Query: benchRecord(vms)}},
		{"one day of douyin", readmodel.Filter{API: messages.APIDouyinAddRole, From: end.Add(-48 * time.Hour), To: end.Add(-24 * time.Hour)}},
		{"page 100", readmodel.Filter{}}, // After set below
	}
	f := readmodel.Filter{}
	for range 99 {
		p, err := m.Filings(ctx, f)
		if err != nil {
			b.Fatal(err)
		}
		f.After = p.Next
	}
	queries[len(queries)-1].f.After = f.After
	var slowest time.Duration
	for _, q := range queries {
		page := timeIt(b, 20, func() error { _, err := m.Filings(ctx, q.f); return err })
		count := timeIt(b, 20, func() error { _, err := m.Counts(ctx, q.f); return err })
		p, _ := m.Filings(ctx, q.f)
		b.Logf("%-18s page %7s  counts %7s  (%d on the page)", q.name, page.Round(10*time.Microsecond), count.Round(10*time.Microsecond), len(p.Filings))
		slowest = max(slowest, page, count)
	}
	b.ReportMetric(float64(slowest.Microseconds())/1000, "slowest_page_ms")

	// A new result, searchable how soon after its publish is acknowledged.
	var fresh []time.Duration
	for i := range 20 {
		r := benchResult(n+i, n, end)
		data, _ := json.Marshal(r)
		t0 := time.Now()
		if _, err := js.Publish(ctx, s.For(r.Tenant).ResultFor(r.API, r.RequestID), data); err != nil {
			b.Fatal(err)
		}
		for {
			p, err := m.Filings(ctx, readmodel.Filter{Query: r.RequestID})
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Filings) == 1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		fresh = append(fresh, time.Since(t0))
	}
	slices.Sort(fresh)
	b.ReportMetric(float64(fresh[len(fresh)-1].Microseconds())/1000, "searchable_max_ms")

	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(m.Size())/(1<<20), "disk_MiB")
	b.ReportMetric(float64(after.HeapInuse)/(1<<20), "heap_MiB")
	b.ReportMetric(float64(rss())/(1<<20), "rss_MiB")
	b.Logf("%d filings: built in %s; slowest page or count %s; searchable within %s (median %s); %d MiB on disk; heap %d MiB, RSS %d MiB",
		n, built.Round(time.Millisecond), slowest.Round(time.Millisecond), fresh[len(fresh)-1].Round(time.Millisecond), fresh[len(fresh)/2].Round(time.Millisecond),
		m.Size()>>20, after.HeapInuse>>20, rss()>>20)
	stop()
}

// ambiguousEvery makes 12 ambiguous filings of a million.
const ambiguousEvery = 83_333

// benchResult is the i-th of n filings received over the 30 days before
// end: most succeeded, 3% failed, 2% rejected (all acme's), 12 in a million
// ambiguous; 70% of the default tenant's, 20% acme's, 10% globex's.
func benchResult(i, n int, end time.Time) messages.Result {
	apis := messages.APIs()
	api := apis[i%len(apis)]
	tenant := ""
	switch i % 10 {
	case 7, 8:
		tenant = "acme"
	case 9:
		tenant = "globex"
	}
	at := end.Add(-30 * 24 * time.Hour).Add(time.Duration(i) * (30 * 24 * time.Hour / time.Duration(n)))
	r := messages.Result{RequestID: fmt.Sprintf("merchant-%d-%s", i, strings.ReplaceAll(string(api), ".", "-")), API: api, Tenant: tenant,
		Account: "default", Status: messages.StatusSucceeded, Attempts: 1, ReceivedAt: at, CompletedAt: at.Add(300 * time.Millisecond),
		UpstreamRequestID: fmt.Sprintf("2026%028d", i), Metadata: map[string]string{"merchant": fmt.Sprintf("杭州某某科技有限公司%d", i%50_000)}}
	switch {
	case i%ambiguousEvery == 7:
		r.Status, r.Error = messages.StatusFailed, &messages.ResultError{Code: "AmbiguousOutcome", Class: messages.ClassAmbiguous, Message: "m"}
	case i%100 >= 10 && i%100 < 13:
		r.Status, r.Error = messages.StatusFailed, &messages.ResultError{Code: "RequestParametersError", Class: messages.ClassPermanent, Message: "m"}
	case i%100 >= 47 && i%100 < 49:
		r.Status, r.Error = messages.StatusRejected, &messages.ResultError{Code: "InvalidRequest", Class: messages.ClassInvalid, Message: "m"}
	default:
		switch api {
		case messages.APIVMSAddQualification:
			r.Result = json.RawMessage(`{"QualificationNo":"` + benchRecord(r) + `"}`)
		case messages.APIDouyinAddRole:
			r.Result = json.RawMessage(fmt.Sprintf(`{"add_role_taskid":"task-%d"}`, i))
		}
	}
	return r
}

func benchRecord(r messages.Result) string {
	return "QUA" + strings.TrimPrefix(r.UpstreamRequestID, "2026")
}

// timeIt runs f k times and returns the slowest.
func timeIt(tb testing.TB, k int, f func() error) time.Duration {
	var slowest time.Duration
	for range k {
		t0 := time.Now()
		if err := f(); err != nil {
			tb.Fatal(err)
		}
		slowest = max(slowest, time.Since(t0))
	}
	return slowest
}

// serverProcess starts a NATS server in a process of its own and returns
// its URL.
func serverProcess(tb testing.TB) string {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serverEnv+"="+filepath.Join(tb.TempDir(), "nats"))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		tb.Fatalf("the server process: %v", err)
	}
	return strings.TrimSpace(line)
}

// rss is this process's resident memory, in bytes.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}
