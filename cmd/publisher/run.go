package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
)

const usageText = `usage:
  publisher send --api API --file FILE|- [--account NAME] [--wait [--timeout 60s]]
  publisher validate --api API --file FILE|-
  publisher dead list
  publisher dead replay (--id ID | --all) [--force]

connection flags (send, dead): --nats-url URL (default nats://127.0.0.1:4222),
  --creds FILE, --nkey FILE, --tls-ca FILE, --tls-cert FILE, --tls-key FILE,
  --prefix PREFIX (default filing)
`

// run is the whole program; main only maps its error to an exit status.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return usagef("no command")
	}
	switch args[0] {
	case "send":
		return runSend(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "validate":
		return runValidate(args[1:], stdin, stdout, stderr)
	case "dead":
		if len(args) < 2 {
			fmt.Fprint(stderr, usageText)
			return usagef("dead needs list or replay")
		}
		switch args[1] {
		case "list":
			return runDeadList(ctx, args[2:], getenv, stdout, stderr)
		case "replay":
			return runDeadReplay(ctx, args[2:], getenv, stdout, stderr)
		}
		return usagef("unknown dead command %q", args[1])
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	}
	fmt.Fprint(stderr, usageText)
	return usagef("unknown command %q", args[0])
}

// newFlagSet returns a flag set that reports errors as usage errors.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}
