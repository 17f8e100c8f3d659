package volcengine

import "errors"

// ErrNoCredentials means the access key or secret is missing.
var ErrNoCredentials = errors.New("volcengine: access key id and secret access key are required")
