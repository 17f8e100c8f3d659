package main

import "errors"

var (
	// errSandboxExternalNATS: --sandbox with a NATS URL. The simulator
	// would join that server's durable consumer and "file" whatever
	// requests it holds, real ones included.
	errSandboxExternalNATS = errors.New("--sandbox refuses to run against an external NATS server")
	// errExternalWithoutSandbox: --sandbox-with-external-nats alone.
	errExternalWithoutSandbox = errors.New("--sandbox-with-external-nats only goes with --sandbox")
	// errNoNATS: no server configured and the embedded one not chosen.
	errNoNATS = errors.New("no NATS server configured: set nats.url (or --nats-url, QUALFILE_NATS_URL, NATS_URL), " +
		"or choose the embedded server with --embedded or nats.url: embedded")
)
