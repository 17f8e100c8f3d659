package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/qualfile/qualfile/internal/buildinfo"
)

const usageText = `usage:
  publisher --version
  publisher send --api API --file FILE|- [--account NAME] [--id ID] [--wait [--timeout 60s]]
  publisher validate --api API --file FILE|-
  publisher trail --id ID [--output text|json]
  publisher list [--status S] [--api API] [--tenants all] [--account A] [--from T] [--to T] [--q TEXT] [--output table|json]
  publisher proof --id ID > proof.json
  publisher verify --file proof.json
  publisher hash-password < password.txt
  publisher dead list
  publisher dead show (--id ID | --seq N) [--raw]
  publisher dead rm (--id ID | --seq N) --reason WHY
  publisher dead replay (--id ID | --seq N | --all) [--force] --reason WHY
  publisher resolve --id ID (--filed-as RECORD | --abandon) --reason WHY
  publisher permissions [--role ROLE ...] [--prefix PREFIX] [--format conf|json]

operators' orders (dead rm, dead replay, resolve) are carried out by the consumer
  and recorded in the trail: --operator NAME (default $QUALFILE_OPERATOR) is the
  name your NATS permissions bind.

connection flags (send, trail, list, proof, verify, dead, resolve): --nats-url URL (default $QUALFILE_NATS_URL, $NATS_URL
  or nats://127.0.0.1:4222), --context NAME (a nats CLI context, or $NATS_CONTEXT),
  --creds FILE, --nkey FILE, --tls-ca FILE, --tls-cert FILE, --tls-key FILE,
  --prefix PREFIX (default filing), --inbox-prefix PREFIX (the inbox of the
  credentials' role, as permissions prints it)
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
	case "permissions":
		return runPermissions(args[1:], stdout, stderr)
	case "resolve":
		return runResolve(ctx, args[1:], getenv, stdout, stderr)
	case "trail":
		return runTrail(ctx, args[1:], getenv, stdout, stderr)
	case "list":
		return runList(ctx, args[1:], getenv, stdout, stderr)
	case "proof":
		return runProof(ctx, args[1:], getenv, stdout, stderr)
	case "verify":
		return runVerify(ctx, args[1:], getenv, stdin, stdout, stderr)
	case "hash-password":
		return runHashPassword(args[1:], stdin, stdout, stderr)
	case "dead":
		if len(args) < 2 {
			fmt.Fprint(stderr, usageText)
			return usagef("dead needs list, show, rm or replay")
		}
		switch args[1] {
		case "list":
			return runDeadList(ctx, args[2:], getenv, stdout, stderr)
		case "replay":
			return runDeadReplay(ctx, args[2:], getenv, stdout, stderr)
		case "show":
			return runDeadShow(ctx, args[2:], getenv, stdout, stderr)
		case "rm":
			return runDeadRm(ctx, args[2:], getenv, stdout, stderr)
		case "help", "-h", "-help", "--help":
			fmt.Fprint(stdout, usageText)
			return nil
		}
		fmt.Fprint(stderr, usageText)
		return usagef("unknown dead command %q", args[1])
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return nil
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, buildinfo.Read())
		return nil
	}
	fmt.Fprint(stderr, usageText)
	return usagef("unknown command %q", args[0])
}

// flagSet is a subcommand's flags: an error is a usage error (its usage
// on stderr), and -h/--help a success (its usage on stdout).
type flagSet struct {
	*flag.FlagSet
	name           string
	stdout, stderr io.Writer
}

func newFlagSet(name string, stdout, stderr io.Writer) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return &flagSet{FlagSet: fs, name: name, stdout: stdout, stderr: stderr}
}

// usage prints the subcommand's flags to w.
func (fs *flagSet) usage(w io.Writer) {
	fmt.Fprintf(w, "usage: publisher %s [flags]\n", fs.name)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.usage(fs.stdout)
			return errHelp
		}
		fs.usage(fs.stderr)
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	return nil
}
