package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/qualfile/qualfile/messages"
)

// Load reads the YAML file at path (none when path is ""), applies the
// defaults and then the QUALFILE_* environment overrides read through
// getenv (os.Getenv when nil), and validates the result.
//
// Unknown YAML keys are errors; in particular a literal secret
// (secret_access_key:, app_secret:, password:) is refused. Every error
// matches ErrInvalidConfig; validation errors are joined (errors.Join), one
// *FieldError per problem.
func Load(path string, getenv func(string) string) (*Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	c := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, &FieldError{Key: path, Problem: "cannot read the configuration file", Err: err}
		}
		if err := decodeYAML(data, c); err != nil {
			var tp *typeProblems
			if !errors.As(err, &tp) {
				return nil, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, path, err)
			}
			// The keys that did decode are checked too, so that one
			// problem does not hide the others.
			c.applyDefaults()
			_ = c.applyEnv(getenv)
			if verr := c.Validate(); verr != nil {
				return nil, fmt.Errorf("%w: %s: %w; and %w", ErrInvalidConfig, path, err, verr)
			}
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, path, err)
		}
	}
	c.applyDefaults()
	if err := c.applyEnv(getenv); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// typeProblems are the keys of a document that could not be decoded; the
// rest of it was.
type typeProblems struct{ msg string }

func (p *typeProblems) Error() string { return p.msg }

// secretKeys are YAML keys someone may write to give a secret literally;
// the error then points at the _env and _file keys.
var secretKeys = []string{"secret_access_key", "session_token", "app_secret", "password", "secret"}

// decodeYAML decodes one YAML document onto c, refusing unknown keys. An
// empty document leaves c unchanged.
func decodeYAML(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return &typeProblems{msg: strings.Join(describe(data, te.Errors), "; ") + secretHint(te.Errors)}
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

// secretHint explains why a literal secret key is unknown.
func secretHint(msgs []string) string {
	for _, m := range msgs {
		for _, k := range secretKeys {
			if strings.Contains(m, "field "+k+" not found") {
				return fmt.Sprintf(" (secrets are never written in the configuration: name an environment variable with %s_env or a file with %s_file)", k, k)
			}
		}
	}
	return ""
}

// applyEnv applies the QUALFILE_* overrides (docs/configuration.md), after
// the YAML file; an unset or empty variable changes nothing. Every malformed
// value is reported, joined.
func (c *Config) applyEnv(getenv func(string) string) error {
	var errs []error
	str := func(name string, dst *string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	num := func(name string, dst *int) { envVar(getenv, &errs, name, dst, strconv.Atoi, "an integer") }
	dur := func(name string, dst *time.Duration) {
		envVar(getenv, &errs, name, dst, time.ParseDuration, "a duration such as 30s or 5m")
	}
	boolean := func(name string, dst *bool) { envVar(getenv, &errs, name, dst, strconv.ParseBool, "true or false") }

	str("NATS_URL", &c.NATS.URL) // the nats tools' variable, which the publisher honours too
	str("QUALFILE_NATS_URL", &c.NATS.URL)
	str("QUALFILE_NATS_CREDS", &c.NATS.CredsFile)
	str("QUALFILE_NATS_NKEY", &c.NATS.NkeyFile)
	str("QUALFILE_NATS_USER", &c.NATS.User)
	str("QUALFILE_NATS_PASSWORD_ENV", &c.NATS.PasswordEnv)
	dur("QUALFILE_NATS_CONNECT_TIMEOUT", &c.NATS.ConnectTimeout)
	str("QUALFILE_STORE_DIR", &c.Embedded.StoreDir)
	str("QUALFILE_EMBEDDED_LISTEN", &c.Embedded.Listen)
	str("QUALFILE_SUBJECT_PREFIX", &c.Subjects.Prefix)
	num("QUALFILE_STREAM_REPLICAS", &c.Streams.Replicas)
	dur("QUALFILE_LEDGER_MAX_AGE", &c.Ledger.MaxAge)
	str("QUALFILE_DURABLE", &c.Consumer.Durable)
	num("QUALFILE_CONCURRENCY", &c.Consumer.Concurrency)
	num("QUALFILE_MAX_DELIVER", &c.Consumer.MaxDeliver)
	dur("QUALFILE_ACK_WAIT", &c.Consumer.AckWait)
	dur("QUALFILE_LEASE", &c.Consumer.Lease)
	dur("QUALFILE_SHUTDOWN_GRACE", &c.Consumer.ShutdownGrace)
	dur("QUALFILE_CALL_TIMEOUT", &c.Consumer.CallTimeout)
	str("QUALFILE_ADMIN_LISTEN", &c.Admin.Listen)
	boolean("QUALFILE_ADMIN_PPROF", &c.Admin.Pprof)
	str("QUALFILE_CONSOLE_LISTEN", &c.Console.Listen)
	str("QUALFILE_CONSOLE_STORE", &c.Console.Store)
	str("QUALFILE_LOG_LEVEL", &c.Log.Level)
	boolean("QUALFILE_LOG_DEVELOPMENT", &c.Log.Development)
	boolean("QUALFILE_RECONCILE", &c.Reconcile.Enabled)
	dur("QUALFILE_RECONCILE_WINDOW", &c.Reconcile.Window)
	boolean("QUALFILE_RECONCILE_REFILE", &c.Reconcile.Refile)
	envVar(getenv, &errs, "QUALFILE_RATE_LIMIT", &c.Limits.Rate,
		func(s string) (float64, error) { return strconv.ParseFloat(s, 64) }, "a number of calls per second")
	return errors.Join(errs...)
}

// envVar sets *dst to the value of the environment variable name, parsed;
// a value parse refuses is reported as not being want.
func envVar[T any](getenv func(string) string, errs *[]error, name string, dst *T, parse func(string) (T, error), want string) {
	if v := getenv(name); v != "" {
		x, err := parse(strings.TrimSpace(v))
		if err != nil {
			*errs = append(*errs, fieldErr(name, "%q is not %s", v, want))
			return
		}
		*dst = x
	}
}

// describe rewrites yaml's "line N: problem" messages as "key.path: problem
// (line N)", and explains the duration format.
func describe(data []byte, msgs []string) []string {
	var root yaml.Node
	_ = yaml.Unmarshal(data, &root) // the document parsed once already
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			num, problem, found := strings.Cut(rest, ": ")
			line, err := strconv.Atoi(num)
			if key := keyAt(&root, line, ""); found && err == nil && key != "" {
				out[i] = fmt.Sprintf("%s: %s (line %d)", key, problem, line)
			}
		}
		out[i] = plainProblem(out[i])
	}
	return out
}

var (
	unknownField = regexp.MustCompile(`field (\S+) not found in type \S+`)
	badType      = regexp.MustCompile("cannot unmarshal !!(\\w+) `([^`]*)` into (\\S+)")
)

// plainProblem says yaml's problems in the configuration's words rather
// than Go's: "unknown key", "must be an integer, not "many"".
func plainProblem(m string) string {
	m = unknownField.ReplaceAllString(m, "unknown key $1")
	return badType.ReplaceAllStringFunc(m, func(s string) string {
		g := badType.FindStringSubmatch(s)
		value, into := messages.Truncate(g[2], 40), g[3]
		want := "a value of another type"
		switch {
		case into == "time.Duration":
			want = `a duration such as "30s", "5m" or "2160h", written as a string`
		case strings.HasPrefix(into, "int") || strings.HasPrefix(into, "uint"):
			want = "an integer"
		case into == "bool":
			want = "true or false"
		case into == "string":
			want = "a string"
		case strings.HasPrefix(into, "map") || strings.HasPrefix(into, "config."):
			want = "a mapping of keys"
		case strings.HasPrefix(into, "[]"):
			want = "a list"
		}
		return fmt.Sprintf("must be %s, not %q", want, value)
	})
}

// keyAt returns the dotted path of the deepest mapping key on line, or "".
func keyAt(n *yaml.Node, line int, path string) string {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if k := keyAt(c, line, path); k != "" {
				return k
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if deeper := keyAt(v, line, p); deeper != "" {
				return deeper
			}
			if k.Line == line {
				return p
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if k := keyAt(c, line, fmt.Sprintf("%s[%d]", path, i)); k != "" {
				return k
			}
		}
	}
	return ""
}
