package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// workerCommand is the hidden subcommand the bench re-executes itself with
// to run the raw, plain and Watermill pipelines each in a process of its
// own, so that /proc tells their CPU apart from the driver's.
const workerCommand = "worker"

// workerConfig is what a worker is told on its command line.
type workerConfig struct {
	pipeline    string
	natsURL     string
	prefix      string
	upstream    string
	concurrency int
}

func (w workerConfig) args() []string {
	return []string{workerCommand, "-pipeline", w.pipeline, "-nats-url", w.natsURL, "-prefix", w.prefix,
		"-upstream", w.upstream, "-concurrency", fmt.Sprint(w.concurrency)}
}

func (w workerConfig) subjects() messages.Subjects { return messages.Subjects{Prefix: w.prefix} }
func (w workerConfig) streams() queue.Streams      { return queue.StreamNames(w.subjects()) }

// runWorker runs one pipeline until ctx ends or its stdin closes (the
// driver stopping it, or dying), then stops it.
func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(workerCommand, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var w workerConfig
	fs.StringVar(&w.pipeline, "pipeline", "", "raw, plain, watermill or contract")
	fs.StringVar(&w.natsURL, "nats-url", "", "NATS server")
	fs.StringVar(&w.prefix, "prefix", "", "subject prefix of this run")
	fs.StringVar(&w.upstream, "upstream", "", "upstream base URL")
	fs.IntVar(&w.concurrency, "concurrency", 64, "handlers")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()

	nc, err := nats.Connect(w.natsURL, nats.Name("qualfile-bench-"+w.pipeline), nats.MaxReconnects(-1))
	if err != nil {
		return fmt.Errorf("worker %s: connect: %w", w.pipeline, err)
	}
	defer nc.Close()
	var stop func()
	switch w.pipeline {
	case pipelineRaw:
		stop, err = startRaw(ctx, nc, w)
	case pipelinePlain:
		stop, err = startPlain(ctx, nc, w)
	case pipelineWatermill:
		stop, err = startWatermill(ctx, nc, w)
	case pipelineContract:
		stop, err = startContract(ctx, nc, w)
	default:
		err = fmt.Errorf("unknown pipeline %q", w.pipeline)
	}
	if err != nil {
		return fmt.Errorf("worker %s: %w", w.pipeline, err)
	}
	fmt.Fprint(stdout, readyLine)
	<-ctx.Done()
	stop()
	drained := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(drained) })
	if err := nc.Drain(); err == nil {
		select {
		case <-drained:
		case <-time.After(5 * time.Second):
		}
	}
	return nil
}
