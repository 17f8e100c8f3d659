// Package sandbox is a strict in-process simulator of the upstream APIs that
// qualfile calls: Volcengine VMS AddQualification, UpdateQualification and
// QueryQualification, Volcengine SMS ApplySignatureIdent and
// GetSignatureIdentList, Douyin add_role and get_class_auth, and the Douyin
// access-token endpoint. It serves them over HTTP on a loopback port
// (Server.Start) or as an http.Handler (Server.Handler), for tests and for
// `consumer --sandbox`. GET / lists the routes, among them the
// /_sandbox/ administration routes (calls, faults, reset, state, review),
// which are unauthenticated: the server only listens on loopback.
//
// The sandbox is strict: it verifies Volcengine signatures, answering the
// vendor's common error codes in the vendor's order (volcExchange.verify),
// and Douyin access tokens; applies exactly the field rules qualfile applies
// (messages.DecodePayload on the bare vendor body); keeps review states
// (ReviewByName, CheckTypeHeader, Server.SetReview); and answers in the
// vendors' envelopes. docs/operations.md describes the seed data and the
// review rule. Every request to a vendor route is recorded as a Call,
// including those refused by verification or answered by a fault.
//
// # Faults
//
// Faults (see Fault) are tried in the order injected and the first that
// fires answers; Fraction draws from a generator seeded with Config.Seed
// (Reset re-seeds it). Latency is waited first; a client that gives up is
// recorded with StatusClientGone. Then a Code answers in the vendor's error
// shape: the Volcengine envelope's Error, Douyin's {"err_no","err_tips",
// "err":{"err_code","err_msg"}} (a non-numeric code becomes 28001005, system
// busy) or the token endpoint's {"err_no","err_tips"} (a non-numeric code
// becomes -1). No Code and a status other than 200 answer a bare status with
// a small HTML body, as a gateway would; otherwise the call proceeds
// normally and is not marked as a fault. Faults apply after authentication
// (on the token endpoint, after the appid, secret and grant_type checks) and
// before the field rules.
package sandbox
