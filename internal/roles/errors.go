package roles

import "errors"

// ErrUnknownRole: a role name that is not one of All.
var ErrUnknownRole = errors.New("roles: unknown role")
