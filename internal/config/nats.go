package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/roles"
	"github.com/qualfile/qualfile/messages"
)

// NATSOptions returns the client options of the nats section of a loaded
// configuration (defaults applied): connection name, connect timeout,
// reconnecting forever every reconnect_wait, and the configured
// authentication (user credentials file, nkey seed file, or user with the
// password read from the environment variable named by password_env
// through getenv) and TLS (CA file, client certificate; the server is
// always verified, against the system roots without a CA file).
//
// Every file is opened here, so a missing or unreadable file is reported
// now, as a *FieldError naming the key (errors.Is(err, fs.ErrNotExist)
// holds for a missing one), not at connect time. A missing password is a
// *SecretError. The problems are joined.
func (c *Config) NATSOptions(getenv func(string) string) ([]nats.Option, error) {
	n := c.NATS
	opts := []nats.Option{
		nats.Name(n.Name),
		// Its replies (pulled requests, KV answers, tokens) arrive on an
		// inbox no other role may subscribe to.
		nats.CustomInboxPrefix(roles.Inbox(roles.Consumer, messages.Subjects{Prefix: c.Subjects.Prefix})),
		nats.Timeout(n.ConnectTimeout),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(n.ReconnectWait),
	}
	var errs []error

	if n.CredsFile != "" {
		if err := readable(n.CredsFile); err != nil {
			errs = append(errs, &FieldError{Key: "nats.creds_file", Problem: "cannot read the credentials file", Err: err})
		} else {
			opts = append(opts, nats.UserCredentials(n.CredsFile))
		}
	}
	if n.NkeyFile != "" {
		if err := readable(n.NkeyFile); err != nil {
			errs = append(errs, &FieldError{Key: "nats.nkey_file", Problem: "cannot read the nkey seed file", Err: err})
		} else if opt, err := nats.NkeyOptionFromSeed(n.NkeyFile); err != nil {
			errs = append(errs, &FieldError{Key: "nats.nkey_file", Problem: fmt.Sprintf("file %q holds no valid user nkey seed", n.NkeyFile)})
		} else {
			opts = append(opts, opt)
		}
	}
	if n.User != "" || n.PasswordEnv != "" {
		var password string
		if n.PasswordEnv != "" && getenv != nil {
			password = getenv(n.PasswordEnv)
		}
		if password == "" {
			errs = append(errs, &SecretError{Key: "nats.password_env", Problem: fmt.Sprintf("environment variable %q is not set or empty", n.PasswordEnv)})
		} else {
			opts = append(opts, nats.UserInfo(n.User, password))
		}
	}
	if t := n.TLS; t.enabled() {
		// The options load their files when applied: apply them to a
		// scratch Options now to report a bad file by its key.
		var scratch nats.Options
		if t.CAFile != "" {
			opt := nats.RootCAs(t.CAFile)
			if err := readable(t.CAFile); err != nil {
				errs = append(errs, &FieldError{Key: "nats.tls.ca_file", Problem: "cannot read the CA file", Err: err})
			} else if err := opt(&scratch); err != nil {
				errs = append(errs, &FieldError{Key: "nats.tls.ca_file", Problem: "holds no usable PEM certificate", Err: err})
			} else {
				opts = append(opts, opt)
			}
		}
		if t.CertFile != "" || t.KeyFile != "" { // Validate refuses one without the other
			opt := nats.ClientCert(t.CertFile, t.KeyFile)
			certErr, keyErr := readable(t.CertFile), readable(t.KeyFile)
			switch {
			case certErr != nil:
				errs = append(errs, &FieldError{Key: "nats.tls.cert_file", Problem: "cannot read the certificate file", Err: certErr})
			case keyErr != nil:
				errs = append(errs, &FieldError{Key: "nats.tls.key_file", Problem: "cannot read the key file", Err: keyErr})
			default:
				if err := opt(&scratch); err != nil {
					errs = append(errs, &FieldError{Key: "nats.tls.cert_file", Problem: "with nats.tls.key_file is not a usable certificate and key", Err: err})
				} else {
					opts = append(opts, opt)
				}
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return opts, nil
}

// readable opens and closes path; the error names the path and the cause.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	return f.Close()
}

// RedactURLs is a comma-separated list of server URLs with any password
// or token in them replaced, for an error message or a log line.
func RedactURLs(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if u, err := url.Parse(p); err == nil && u.User != nil {
			p = u.Redacted()
			if _, hasPw := u.User.Password(); !hasPw {
				p = strings.Replace(p, u.User.Username()+"@", "xxxxx@", 1) // a token in the user part
			}
		}
		parts[i] = p
	}
	return strings.Join(parts, ",")
}
