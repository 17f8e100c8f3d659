package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/config"
	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// connFlags are the connection settings every networked command takes.
type connFlags struct {
	url, creds, nkey, tlsCA, tlsCert, tlsKey, prefix string
	context, inbox, tenant                           string
	role                                             roles.Role // whose inbox prefix is the default
	fs                                               *flag.FlagSet
	getenv                                           func(string) string
}

// newConnFlagSet is newFlagSet with the connection flags.
func newConnFlagSet(name string, getenv func(string) string, stdout, stderr io.Writer) (*flagSet, *connFlags) {
	fs := newFlagSet(name, stdout, stderr)
	c := &connFlags{fs: fs.FlagSet, getenv: getenv}
	def := getenv("QUALFILE_NATS_URL")
	if def == "" {
		def = getenv("NATS_URL")
	}
	if def == "" {
		def = nats.DefaultURL
	}
	fs.StringVar(&c.url, "nats-url", def, "NATS server URL (env QUALFILE_NATS_URL, then NATS_URL)")
	fs.StringVar(&c.context, "context", getenv("NATS_CONTEXT"), "a nats CLI context: its url, credentials and TLS files, as the nats command uses them (env NATS_CONTEXT)")
	fs.StringVar(&c.creds, "creds", getenv("QUALFILE_NATS_CREDS"), "NATS credentials file (env QUALFILE_NATS_CREDS)")
	fs.StringVar(&c.nkey, "nkey", "", "NKey seed file")
	fs.StringVar(&c.tlsCA, "tls-ca", "", "CA certificate file to verify the server")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "client certificate file")
	fs.StringVar(&c.tlsKey, "tls-key", "", "client key file")
	prefix := getenv("QUALFILE_SUBJECT_PREFIX")
	if prefix == "" {
		prefix = messages.DefaultPrefix
	}
	fs.StringVar(&c.prefix, "prefix", prefix, "subject prefix (env QUALFILE_SUBJECT_PREFIX, as the consumer reads it)")
	fs.StringVar(&c.inbox, "inbox-prefix", getenv("QUALFILE_INBOX_PREFIX"),
		"inbox prefix of the connection, as `publisher permissions` prints it for the role of the credentials (env QUALFILE_INBOX_PREFIX; default _INBOX.<prefix>.submitter for send, .operator for dead and resolve, .auditor for trail)")
	fs.StringVar(&c.tenant, "tenant", getenv("QUALFILE_TENANT"), "the tenant whose requests, results and trails these are (env QUALFILE_TENANT; default the default tenant, whose subjects carry none)")
	c.role = roleOf(name)
	return fs, c
}

// roleOf is the role whose inbox a command uses unless told otherwise.
func roleOf(command string) roles.Role {
	switch {
	case command == "send":
		return roles.Submitter
	case strings.HasPrefix(command, "dead"), command == "resolve":
		return roles.Operator
	}
	return roles.Auditor
}

func (c *connFlags) subjects() messages.Subjects {
	return messages.Subjects{Prefix: c.prefix, Tenant: c.tenant}
}

// natsContext is what the publisher reads of a nats CLI context file.
type natsContext struct {
	URL      string `json:"url"`
	Creds    string `json:"creds"`
	NKey     string `json:"nkey"`
	Cert     string `json:"cert"`
	Key      string `json:"key"`
	CA       string `json:"ca"`
	User     string `json:"user"`
	Password string `json:"password"`
	Token    string `json:"token"`
	Inbox    string `json:"inbox_prefix"`
}

// loadContext reads the nats CLI context name from
// $XDG_CONFIG_HOME/nats/context/<name>.json (~/.config when unset).
func loadContext(name string, getenv func(string) string) (natsContext, error) {
	var nctx natsContext
	if name == "" || strings.ContainsAny(name, `/\`) || strings.HasPrefix(name, ".") {
		return nctx, usagef("--context %q: not a context name", name)
	}
	dir := getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home := getenv("HOME")
		if home == "" {
			return nctx, fmt.Errorf("--context %s: neither XDG_CONFIG_HOME nor HOME is set", name)
		}
		dir = filepath.Join(home, ".config")
	}
	path := filepath.Join(dir, "nats", "context", name+".json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nctx, fmt.Errorf("--context %s: %w", name, err)
	}
	if err := json.Unmarshal(b, &nctx); err != nil {
		return nctx, fmt.Errorf("--context %s: %s: %w", name, path, err)
	}
	return nctx, nil
}

// connect opens a NATS connection and a JetStream handle; the named
// context, if any, fills in every setting no flag gave.
func (c *connFlags) connect() (*nats.Conn, jetstream.JetStream, error) {
	if c.tenant != "" && !messages.ValidTenant(c.tenant) {
		return nil, nil, usagef("--tenant %q: lower-case letters, digits and _, at most %d, not an api's first token", c.tenant, messages.MaxTenantLen)
	}
	opts := []nats.Option{nats.Name("qualfile-publisher"), nats.Timeout(5 * time.Second)}
	if c.context != "" {
		nctx, err := loadContext(c.context, c.getenv)
		if err != nil {
			return nil, nil, err
		}
		set := map[string]bool{}
		c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"nats-url": nctx.URL, "creds": nctx.Creds, "nkey": nctx.NKey, "tls-ca": nctx.CA, "tls-cert": nctx.Cert, "tls-key": nctx.Key,
			"inbox-prefix": nctx.Inbox} {
			if !set[name] && v != "" {
				_ = c.fs.Set(name, v) // a string flag takes any value
			}
		}
		switch {
		case nctx.Token != "":
			opts = append(opts, nats.Token(nctx.Token))
		case nctx.User != "":
			opts = append(opts, nats.UserInfo(nctx.User, nctx.Password))
		}
	}
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
	inbox := c.inbox
	if inbox == "" {
		inbox = roles.Inbox(c.role, c.subjects())
		if c.role == roles.Submitter {
			inbox = roles.TenantInbox(c.subjects(), c.tenant)
		}
	}
	opts = append(opts, nats.CustomInboxPrefix(inbox))
	nc, err := nats.Connect(c.url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w", config.RedactURLs(c.url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
