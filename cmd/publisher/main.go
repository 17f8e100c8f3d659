// Command publisher sends filing requests to qualfile, follows them and
// manages its dead-letter stream; usageText lists the commands and
// docs/publisher.md describes them.
//
// Exit status: 0 success (for --wait: the result is succeeded), 1 a
// rejected or failed result or invalid input, 2 usage or connection errors.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	if code, ok := err.(exitError); ok {
		return int(code)
	}
	fmt.Fprintln(stderr, "publisher:", err)
	return 2
}
