package filing

import "errors"

// ErrShutdown is the cause of the work context's cancellation when the
// shutdown grace period runs out.
var ErrShutdown = errors.New("filing: shutdown grace period over")
