package retry

import "errors"

// ErrAmbiguous marks an error after which nobody knows whether the vendor
// acted on the request: it was sent, but no answer came back (a timeout, a
// connection reset). It is matched alongside ErrTransient. A call that only
// reads may be retried; a call that creates a record must not be re-filed
// blindly.
var ErrAmbiguous = errors.New("outcome unknown: the request may have reached the vendor")
