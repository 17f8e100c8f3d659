// Package messages holds qualfile's wire types: the request envelope, the
// five vendor payloads, the result and the audit event, subject names,
// validation and PII redaction. It is public so that Go services that
// publish requests or read results can use the very types and rules
// qualfile does:
//
//	import "github.com/qualfile/qualfile/messages"
//
// It imports neither nats nor zap.
package messages

import "slices"

// API is the wire name of one vendor call, e.g. "vms.add_qualification".
type API string

// The five calls qualfile makes (docs/vendors.md).
const (
	APIVMSAddQualification    API = "vms.add_qualification"
	APIVMSUpdateQualification API = "vms.update_qualification"
	APISMSApplySignatureIdent API = "sms.apply_signature_ident"
	APIDouyinAddRole          API = "douyin.add_role"
	APIDouyinGetClassAuth     API = "douyin.get_class_auth"
)

var apis = []API{APIVMSAddQualification, APIVMSUpdateQualification, APISMSApplySignatureIdent, APIDouyinAddRole, APIDouyinGetClassAuth}

// APIs returns every known API in a stable order.
func APIs() []API { return slices.Clone(apis) }

// Valid reports whether a is one of the five known calls.
func (a API) Valid() bool { return slices.Contains(apis, a) }

// Resendable reports whether the call may be sent again when nobody knows
// whether the last one reached the vendor: only a pure read. A create
// would file twice; UpdateQualification only accepts a rejected
// qualification, so a second call after a lost answer fails although the
// first one succeeded.
func (a API) Resendable() bool { return a == APIDouyinGetClassAuth }

// Reconcilable reports whether the vendor has a read that can tell whether
// a create of this api whose answer was lost was filed: VMS
// QueryQualification for vms.add_qualification, SMS GetSignatureIdentList
// for sms.apply_signature_ident. An update cannot be told from the state
// it leaves behind, and Douyin add_role has no read that can decide.
func (a API) Reconcilable() bool {
	return a == APIVMSAddQualification || a == APISMSApplySignatureIdent
}

func (a API) String() string { return string(a) }
