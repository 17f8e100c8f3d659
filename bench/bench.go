package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// bench is one benchmark run: the NATS server, the upstream, the driver's
// connection, and the processes it started.
type bench struct {
	o           options
	root        string // the qualfile repository
	tmp         string
	self        string // this executable, re-run as a worker
	stderr      io.Writer
	began       time.Time
	nats        *natsServer
	up          *upstream
	nc          *nats.Conn
	js          jetstream.JetStream
	pub         *publisher
	reqs        *requests
	qualfileBin string
	procs       children
	runs        int
}

// run is the whole program: the hidden worker subcommand, or a benchmark.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == workerCommand {
		return runWorker(ctx, args[1:], stdout, stderr)
	}
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	b := &bench{o: o, stderr: stderr, began: time.Now()}
	defer b.close()
	if err := b.setUp(ctx); err != nil {
		return err
	}
	rep, err := b.measure(ctx)
	if rep == nil {
		return err
	}
	table := rep.markdown()
	fmt.Fprint(stdout, table)
	if ctx.Err() != nil {
		return err // interrupted: the files of the last complete run stay
	}
	paths, werr := rep.write(o.Out, table)
	for _, p := range paths {
		b.logf("wrote %s", p)
	}
	return errors.Join(err, werr)
}

// setUp finds the repository, builds qualfile, starts the NATS server and
// the upstream, and connects the driver.
func (b *bench) setUp(ctx context.Context) error {
	var err error
	if b.root, err = findRoot(); err != nil {
		return err
	}
	if b.self, err = os.Executable(); err != nil {
		return err
	}
	if b.reqs, err = loadRequests(b.root); err != nil {
		return err
	}
	if b.tmp, err = os.MkdirTemp("", "qualfile-bench-"); err != nil {
		return err
	}
	if b.o.has(pipelineQualfile) {
		b.logf("building the qualfile consumer")
		if b.qualfileBin, err = buildQualfile(ctx, b.root, b.tmp); err != nil {
			return err
		}
	}
	if b.nats, err = startNATS(ctx, b.o); err != nil {
		return err
	}
	if b.up, err = startUpstream(b.o.UpstreamLatency); err != nil {
		return err
	}
	if err := checkUpstream(ctx, b.root, b.up.url); err != nil {
		return err
	}
	if b.nc, err = nats.Connect(b.nats.url, nats.Name("qualfile-bench-driver"), nats.MaxReconnects(-1)); err != nil {
		return fmt.Errorf("connect to NATS %s: %w", b.nats.url, err)
	}
	if b.js, err = jetstream.New(b.nc); err != nil {
		return err
	}
	if b.pub, err = newPublisher(b.nc); err != nil {
		return err
	}
	b.logf("NATS %s; upstream %s (latency %s); requests %s, %d bytes each", b.nats.describe(), b.up.url, b.o.UpstreamLatency, b.reqs.api, b.reqs.size())
	return nil
}

// close stops everything setUp started, children first.
func (b *bench) close() {
	b.procs.killAll()
	if b.nc != nil {
		b.nc.Close()
	}
	if b.up != nil {
		b.up.close()
	}
	if b.nats != nil {
		b.nats.close()
	}
	if b.tmp != "" {
		_ = os.RemoveAll(b.tmp)
	}
}

// findRoot is the qualfile repository: the parent of the bench directory
// (the bench runs as `cd bench && go run .`), or the current directory.
func findRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for _, dir := range []string{filepath.Dir(wd), wd} {
		if st, err := os.Stat(filepath.Join(dir, "cmd", "consumer")); err == nil && st.IsDir() {
			return dir, nil
		}
	}
	return "", fmt.Errorf("cannot find the qualfile repository (cmd/consumer) above %s; run the bench from its directory: cd bench && go run .", wd)
}

func (b *bench) nextPrefix(pipeline string) string {
	b.runs++
	return prefixOf(pipeline, b.runs)
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%5.1fs] %s\n", time.Since(b.began).Seconds(), fmt.Sprintf(format, args...))
}

// measure runs every phase and returns the report. A run that fails is
// recorded with its error and the phases go on, so that the report shows
// everything; the errors are returned with it. Only setting up and ctx
// ending stop it early.
func (b *bench) measure(ctx context.Context) (*report, error) {
	rep := newReport(b)
	var problems []error
	fail := func(what string, err error) string {
		problems = append(problems, fmt.Errorf("%s: %w", what, err))
		b.logf("FAILED %s: %v", what, err)
		return err.Error()
	}

	// Throughput: the pipelines interleaved, repeated.
	for rep_i := 1; rep_i <= b.o.Repeats && ctx.Err() == nil; rep_i++ {
		for _, p := range b.o.Pipelines {
			r, err := b.drain(ctx, p, rep_i, b.o.Requests, b.o.Concurrency)
			if err != nil {
				r.Error = fail(fmt.Sprintf("throughput %s repeat %d", p, rep_i), err)
			} else {
				b.logf("throughput %-9s repeat %d: %d filings at %.0f/s; CPU s/1k: pipeline %.3f, driver %.3f; peak RSS %.0f MiB; upstream %d calls, %d new connections",
					p, rep_i, r.Results, r.FilingsPerSec, r.PipelineCPU, r.DriverCPU, r.PeakRSSMiB, r.UpstreamCalls, r.UpstreamNewConns)
			}
			rep.Throughput = append(rep.Throughput, r)
			if ctx.Err() != nil {
				break
			}
		}
	}

	// Latency at a fixed offered rate.
	rate := b.o.Rate
	rep.RateSource = "--rate"
	if rate == 0 {
		rate, rep.RateSource = rep.defaultRate()
	}
	rep.Rate = rate
	if rate > 0 {
		for rep_i := 1; rep_i <= b.o.Repeats && ctx.Err() == nil; rep_i++ {
			for _, p := range b.o.Pipelines {
				r, err := b.latency(ctx, p, rep_i, rate)
				if err != nil {
					r.Error = fail(fmt.Sprintf("latency %s repeat %d", p, rep_i), err)
				} else {
					b.logf("latency    %-9s repeat %d: %.0f/s offered, %.0f/s achieved; p50 %.1f ms, p99 %.1f ms",
						p, rep_i, r.OfferedRate, r.AchievedRate, r.P50ms, r.P99ms)
				}
				rep.Latency = append(rep.Latency, r)
				if ctx.Err() != nil {
					break
				}
			}
		}
	} else if len(b.o.Pipelines) > 0 {
		b.logf("latency phase skipped: no rate (no throughput measured and no --rate)")
	}

	if b.o.has(pipelineQualfile) {
		// The concurrency sweep at 100 ms.
		for _, c := range b.o.Sweep {
			if ctx.Err() != nil {
				break
			}
			p, err := b.sweep(ctx, c)
			if err != nil {
				p.Error = fail(fmt.Sprintf("sweep concurrency %d", c), err)
			} else {
				b.logf("sweep      concurrency %4d: %.0f/s of a %.0f/s bound (%.0f%%), %d new connections",
					c, p.FilingsPerSec, p.Bound, 100*p.OfBound, p.NewConns)
			}
			rep.Sweep = append(rep.Sweep, p)
		}
		// The backlog run, and its comparison.
		sizes := []int{}
		if b.o.Backlog > 0 {
			sizes = append(sizes, b.o.Backlog)
		}
		if b.o.BacklogCompare > 0 && !slices.Contains(sizes, b.o.BacklogCompare) {
			sizes = append(sizes, b.o.BacklogCompare)
		}
		for _, n := range sizes {
			if ctx.Err() != nil {
				break
			}
			b.logf("backlog    %d requests: publishing", n)
			r, err := b.backlog(ctx, n, b.o.BacklogDrain)
			if err != nil {
				r.Error = fail(fmt.Sprintf("backlog %d", n), err)
			} else {
				b.logf("backlog    %d requests: %d drained in %.1f s (%.0f/s); RSS %.0f MiB at start, %.0f MiB at most",
					n, r.Drained, r.DrainSeconds, r.FilingsPerSec, r.RSSAtStartMiB, r.MaxRSSMiB)
			}
			rep.Backlog = append(rep.Backlog, r)
		}
	}
	rep.finish(time.Since(b.began))
	if err := ctx.Err(); err != nil {
		problems = append(problems, err)
	}
	return rep, errors.Join(problems...)
}
