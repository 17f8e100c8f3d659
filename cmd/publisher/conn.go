package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/messages"
)

// connFlags are the connection settings every networked command takes.
type connFlags struct {
	url, creds, nkey, tlsCA, tlsCert, tlsKey, prefix string
}

func (c *connFlags) register(fs *flag.FlagSet, getenv func(string) string) {
	def := getenv("QUALFILE_NATS_URL")
	if def == "" {
		def = nats.DefaultURL
	}
	fs.StringVar(&c.url, "nats-url", def, "NATS server URL (env QUALFILE_NATS_URL)")
	fs.StringVar(&c.creds, "creds", getenv("QUALFILE_NATS_CREDS"), "NATS credentials file (env QUALFILE_NATS_CREDS)")
	fs.StringVar(&c.nkey, "nkey", "", "NKey seed file")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA certificate file to verify the server")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate file")
	fs.StringVar(&c.tlsKey, "tls-key", "", "client key file")
	fs.StringVar(&c.prefix, "prefix", messages.DefaultPrefix, "subject prefix")
}

func (c *connFlags) subjects() messages.Subjects { return messages.Subjects{Prefix: c.prefix} }

// connect opens a NATS connection and a JetStream handle.
func (c *connFlags) connect(ctx context.Context) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("qualfile-publisher"), nats.Timeout(5 * time.Second)}
	if c.creds != "" {
		opts = append(opts, nats.UserCredentials(c.creds))
	}
	if c.nkey != "" {
		o, err := nats.NkeyOptionFromSeed(c.nkey)
		if err != nil {
			return nil, nil, fmt.Errorf("nkey %s: %w", c.nkey, err)
		}
		opts = append(opts, o)
	}
	if c.tlsCA != "" {
		opts = append(opts, nats.RootCAs(c.tlsCA))
	}
	if c.tlsCert != "" || c.tlsKey != "" {
		if c.tlsCert == "" || c.tlsKey == "" {
			return nil, nil, usagef("--tls-cert and --tls-key go together")
		}
		opts = append(opts, nats.ClientCert(c.tlsCert, c.tlsKey))
	}
	nc, err := nats.Connect(c.url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to %s: %w", c.url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	_ = ctx
	return nc, js, nil
}
