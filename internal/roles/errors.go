package roles

import "errors"

// ErrUnknownRole: a role name that is not one of All.
var ErrUnknownRole = errors.New("roles: unknown role")

// ErrBadOperator: an operator name that cannot be a subject token of the
// control service.
var ErrBadOperator = errors.New("roles: bad operator name")

// ErrBadTenant: a tenant name that cannot be a subject token of its own
// (messages.ValidTenant).
var ErrBadTenant = errors.New("roles: bad tenant name")
