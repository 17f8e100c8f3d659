package config

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns for a configuration
// problem matches one of them with errors.Is.
var (
	// ErrInvalidConfig is matched by every problem found in the
	// configuration: a YAML key that does not exist, a value of the wrong
	// type or out of range, a bad environment override, a file named by
	// the configuration that cannot be used.
	ErrInvalidConfig = errors.New("invalid configuration")
	// ErrMissingSecret is matched when a secret (or credential) an account
	// or the NATS connection needs cannot be read: the environment variable
	// is unset or empty, the file is unreadable or empty, or the
	// configuration names no source at all.
	ErrMissingSecret = errors.New("missing secret")
	// ErrNoAccounts is returned by ResolveAccounts when the configuration
	// has no accounts: the consumer could not file anything.
	ErrNoAccounts = errors.New("no accounts configured")
)

// FieldError is one problem with one configuration key. It matches
// ErrInvalidConfig and, when set, Err.
type FieldError struct {
	// Key is the YAML path of the setting ("consumer.concurrency",
	// "accounts.acme.volcengine.region") or the name of the environment
	// variable that overrode it ("QUALFILE_CONCURRENCY").
	Key string
	// Problem says what is wrong. It never contains a secret.
	Problem string
	// Err is the underlying error, if any (e.g. a *fs.PathError).
	Err error
}

func (e *FieldError) Error() string { return withCause("config: "+e.Key+": "+e.Problem, e.Err) }

// Unwrap returns ErrInvalidConfig and Err.
func (e *FieldError) Unwrap() []error { return causes(ErrInvalidConfig, e.Err) }

// SecretError reports a secret (or credential) that could not be read. It
// names where the value should have come from but never contains the value.
// It matches ErrMissingSecret and, when set, Err (e.g. fs.ErrNotExist).
type SecretError struct {
	// Account is the account name; empty for the NATS connection.
	Account string
	// Key is the YAML key naming the source, relative to the account
	// ("volcengine.secret_access_key_env") or absolute for NATS
	// ("nats.password_env").
	Key string
	// Problem says what is wrong, e.g. `environment variable "X" is not set`.
	Problem string
	// Err is the underlying error, if any.
	Err error
}

func (e *SecretError) Error() string {
	msg := "config: "
	if e.Account != "" {
		msg += fmt.Sprintf("account %q: ", e.Account)
	}
	return withCause(msg+e.Key+": "+e.Problem, e.Err)
}

// Unwrap returns ErrMissingSecret and Err.
func (e *SecretError) Unwrap() []error { return causes(ErrMissingSecret, e.Err) }

// withCause appends the message of err, if any, to msg.
func withCause(msg string, err error) string {
	if err != nil {
		msg += ": " + err.Error()
	}
	return msg
}

// causes is what an error with sentinel and the optional cause err matches.
func causes(sentinel, err error) []error {
	if err == nil {
		return []error{sentinel}
	}
	return []error{sentinel, err}
}

// fieldErr builds a *FieldError with a formatted problem.
func fieldErr(key, format string, args ...any) error {
	return &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)}
}
