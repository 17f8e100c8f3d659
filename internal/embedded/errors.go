package embedded

import "errors"

// Sentinel errors of Start; the returned errors wrap them with the details.
var (
	// ErrBadListen: Config.Listen is not a host:port address.
	ErrBadListen = errors.New("embedded NATS: listen address is not host:port")
	// ErrNonLoopback: Config.Listen is not a loopback address and
	// AllowNonLoopback is not set.
	ErrNonLoopback = errors.New("embedded NATS: refusing a non-loopback listen address (the embedded server has no authentication or TLS)")
	// ErrListen: the server could not listen, e.g. the port is in use.
	ErrListen = errors.New("embedded NATS: cannot listen")
	// ErrStoreDir: the store directory cannot be created.
	ErrStoreDir = errors.New("embedded NATS: store directory unusable")
	// ErrStart: the server failed to start (for instance JetStream could
	// not use its store), or was not ready in time.
	ErrStart = errors.New("embedded NATS: server did not start")
)
