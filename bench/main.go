// Command bench measures qualfile against reference pipelines on one NATS
// server and one local vendor-shaped upstream: the raw JetStream consume +
// ack floor, a plain hand-written nats.go pipeline, a Watermill pipeline and
// the real qualfile consumer binary, each in its own process.
//
//	cd bench && go run .          # full run, results in bench/results/
//	cd bench && go run . -short   # CI: under a minute, checks completion
//
// See README.md in this directory for the flags and what each figure means.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
