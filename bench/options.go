package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The five pipelines, in the order they are interleaved.
const (
	pipelineRaw       = "raw"
	pipelinePlain     = "plain"
	pipelineWatermill = "watermill"
	pipelineContract  = "contract"
	pipelineQualfile  = "qualfile"
)

var allPipelines = []string{pipelineRaw, pipelinePlain, pipelineWatermill, pipelineContract, pipelineQualfile}

// sweepLatency is the upstream latency of the concurrency sweep; a point's
// bound is its concurrency divided by it.
const sweepLatency = 100 * time.Millisecond

// options are the parsed flags, with the -short defaults applied to every
// flag that was not set explicitly.
type options struct {
	Short           bool
	NATSURL         string
	Replicas        int
	SyncAlways      bool
	Repeats         int
	Requests        int
	Concurrency     int
	UpstreamLatency time.Duration
	Rate            float64
	LatencyFor      time.Duration
	Backlog         int
	BacklogDrain    time.Duration
	BacklogCompare  int
	Sweep           []int
	SweepRounds     int
	Pipelines       []string
	Out             string
	Profile         string
}

func (o options) has(p string) bool { return slices.Contains(o.Pipelines, p) }

// parseOptions reads the flags of a benchmark run.
func parseOptions(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var sweep, pipelines string
	fs.BoolVar(&o.Short, "short", false, "CI mode: 1 repeat, small figures, under a minute; checks completion, not figures")
	fs.StringVar(&o.NATSURL, "nats-url", "", "an external NATS server or cluster (comma separated URLs); empty starts an embedded server")
	fs.IntVar(&o.Replicas, "replicas", 1, "stream replicas (3 on a cluster)")
	fs.BoolVar(&o.SyncAlways, "sync-always", false, "embedded server: fsync every JetStream write before acknowledging it (qualfile's own embedded mode does); default the nats-server default (sync every 2 min)")
	fs.IntVar(&o.Repeats, "repeats", 3, "rounds of the interleaved pipelines")
	fs.IntVar(&o.Requests, "requests", 20000, "backlog of each throughput run")
	fs.IntVar(&o.Concurrency, "concurrency", 64, "handlers of each pipeline (qualfile's consumer.concurrency)")
	fs.DurationVar(&o.UpstreamLatency, "upstream-latency", 0, "how long the upstream waits before answering a filing call")
	fs.Float64Var(&o.Rate, "rate", 0, "offered rate of the latency phase, requests/s; 0: half of plain's median peak of this run")
	fs.DurationVar(&o.LatencyFor, "latency-duration", 5*time.Second, "how long the latency phase offers its rate, per pipeline and repeat")
	fs.IntVar(&o.Backlog, "backlog", 1000000, "requests queued before qualfile starts in the backlog run")
	fs.DurationVar(&o.BacklogDrain, "backlog-drain", 60*time.Second, "how long qualfile drains the backlog at most")
	fs.IntVar(&o.BacklogCompare, "backlog-compare", 10000, "the smaller backlog the backlog run is compared with")
	fs.StringVar(&sweep, "sweep", "64,256,512,1024", "qualfile concurrencies of the sweep at 100 ms upstream latency (empty: no sweep)")
	fs.IntVar(&o.SweepRounds, "sweep-rounds", 40, "requests per sweep point, in multiples of its concurrency")
	fs.StringVar(&pipelines, "pipelines", strings.Join(allPipelines, ","), "pipelines to measure, a subset of "+strings.Join(allPipelines, ","))
	fs.StringVar(&o.Profile, "profile", "", "write a CPU profile of qualfile's first throughput run (3 s, through its admin.pprof) to this file")
	fs.StringVar(&o.Out, "out", "", "directory of the results (default results, or results/short with -short)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.Short {
		short := map[string]func(){
			"repeats":          func() { o.Repeats = 1 },
			"requests":         func() { o.Requests = 2000 },
			"latency-duration": func() { o.LatencyFor = 1500 * time.Millisecond },
			"backlog":          func() { o.Backlog = 20000 },
			"backlog-drain":    func() { o.BacklogDrain = 4 * time.Second },
			"backlog-compare":  func() { o.BacklogCompare = 10000 },
			"sweep":            func() { sweep = "64,256" },
			"sweep-rounds":     func() { o.SweepRounds = 10 },
		}
		for name, apply := range short {
			if !set[name] {
				apply()
			}
		}
	}
	if o.Out == "" {
		o.Out = "results"
		if o.Short {
			o.Out = filepath.Join("results", "short")
		}
	}

	var err error
	if o.Sweep, err = parseInts(sweep); err != nil {
		return o, fmt.Errorf("--sweep: %w", err)
	}
	for _, p := range splitList(pipelines) {
		if !slices.Contains(allPipelines, p) {
			return o, fmt.Errorf("--pipelines: unknown pipeline %q (known: %s)", p, strings.Join(allPipelines, ", "))
		}
		if !slices.Contains(o.Pipelines, p) {
			o.Pipelines = append(o.Pipelines, p)
		}
	}
	// Interleave in the canonical order whatever order was given.
	slices.SortFunc(o.Pipelines, func(a, b string) int {
		return slices.Index(allPipelines, a) - slices.Index(allPipelines, b)
	})

	var problems []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Errorf(format, args...))
		}
	}
	check(len(o.Pipelines) > 0, "--pipelines: none given")
	check(o.Repeats >= 1, "--repeats must be at least 1")
	check(o.Requests >= 2, "--requests must be at least 2")
	check(o.Concurrency >= 1, "--concurrency must be at least 1")
	check(o.Replicas >= 1, "--replicas must be at least 1")
	check(o.UpstreamLatency >= 0, "--upstream-latency must not be negative")
	check(o.Rate >= 0, "--rate must not be negative")
	check(o.LatencyFor > 0, "--latency-duration must be positive")
	check(o.Backlog >= 0, "--backlog must not be negative (0: no backlog run)")
	check(o.BacklogDrain > 0, "--backlog-drain must be positive")
	check(o.BacklogCompare >= 0, "--backlog-compare must not be negative")
	check(o.SweepRounds >= 1, "--sweep-rounds must be at least 1")
	for _, c := range o.Sweep {
		check(c >= 1, "--sweep: concurrency %d must be at least 1", c)
	}
	check(!(o.SyncAlways && o.NATSURL != ""), "--sync-always only applies to the embedded server")
	return o, errors.Join(problems...)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		n, err := strconv.Atoi(strings.ReplaceAll(f, "_", ""))
		if err != nil {
			return nil, fmt.Errorf("%q is not a number", f)
		}
		out = append(out, n)
	}
	return out, nil
}
