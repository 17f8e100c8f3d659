// Package sandbox is a strict in-process simulator of the upstream APIs that
// qualfile calls: Volcengine VMS AddQualification and UpdateQualification,
// Volcengine SMS ApplySignatureIdent, Douyin add_role and get_class_auth, and
// the Douyin access-token endpoint. It serves them over HTTP on a loopback
// port (Server.Start) or as an http.Handler (Server.Handler), for tests and
// for `consumer --sandbox`.
//
// The sandbox is strict: it verifies Volcengine signatures and Douyin access
// tokens, applies exactly the field rules qualfile applies
// (messages.DecodePayload on the bare vendor body), keeps review states, and
// answers in the vendors' envelopes. Faults (error codes, bare HTTP statuses,
// latency) can be injected for tests and benchmarks.
//
// # Defaults
//
//   - Addr "127.0.0.1:0"; a non-loopback address is refused by New.
//   - Keys {DefaultAccessKeyID: DefaultSecretAccessKey}; Apps
//     {DefaultAppID: DefaultAppSecret}.
//   - TokenTTL 2h (expires_in 7200), MaxClockSkew 15m, MaxBodyBytes 32 MiB,
//     Now time.Now, Seed 0.
//
// # Routes
//
// Volcengine (one server answers both services):
//
//	POST /?Action=AddQualification&Version=2022-01-01      service vms
//	POST /?Action=UpdateQualification&Version=2022-01-01   service vms
//	POST /?Action=ApplySignatureIdent&Version=2021-01-11   service volcSMS
//
// Douyin:
//
//	POST /api/apps/v2/token
//	POST /auth/entity/add_role
//	POST /auth/entity/get_class_auth
//
// Administration (unauthenticated; the server only listens on loopback):
//
//	GET    /_sandbox/calls         recorded calls, JSON (?api=vms.add_qualification filters)
//	GET    /_sandbox/faults        active faults with their ids
//	POST   /_sandbox/faults        inject a Fault (JSON, latency as a Go duration "2s") → {"id":N}
//	DELETE /_sandbox/faults        clear every fault
//	DELETE /_sandbox/faults/{id}   remove one fault
//	POST   /_sandbox/reset         back to the seed state; calls and faults cleared
//	GET    /_sandbox/state         qualifications, SMS idents, Douyin entities, roles, class auths
//	POST   /_sandbox/review        {"id":"…","status":"approved|rejected|under_review"} (see Server.SetReview)
//
// # Volcengine verification
//
// Checks run in this order; the first failure answers in the vendor
// envelope with the vendor's common error code, CodeN and HTTP status:
//
//  1. Authorization header missing → MissingAuthenticationToken (100003, 401);
//     unparsable → MissingSignature (100005, 401).
//  2. Access key not in Config.Keys → InvalidAccessKey (100009, 401).
//  3. X-Date missing → MissingRequestInfo (100004, 400); unparsable or more
//     than MaxClockSkew away from Now → InvalidTimestamp (100006, 400).
//  4. X-Content-Sha256, when sent, differs from the SHA-256 of the body →
//     SignatureDoesNotMatch (100010, 401).
//  5. The scope's service is neither vms nor volcSMS → ServiceNotFound
//     (100007, 404); unknown Action, wrong Version, or an Action of the
//     other service → InvalidActionOrVersion (100008, 404).
//  6. SignedHeaders lacks host or x-date, the scope's date is not X-Date's,
//     or the signature recomputed with volcengine.Signature over the received
//     request differs → SignatureDoesNotMatch (100010, 401, as the vendor's
//     common error table says). The sandbox's canonical request is sent back
//     in the X-Sandbox-Canonical-Request header (Go-quoted) to help debug a
//     signer.
//
// Any region in the scope is accepted and echoed in ResponseMetadata.Region.
// A method other than POST → MethodNotAllowed (405). Then faults apply, then
// the field rules: VMS → RequestParametersError (HTTP 200) whose Message
// lists every problem; SMS → Code "1001", CodeN 1001, Message "参数错误: …".
// A body larger than MaxBodyBytes → the same parameter error with HTTP 413.
//
// # Volcengine state
//
// AddQualification issues a QualificationNo "QUA" + 18 digits (13 of them
// the Unix milliseconds of Now) and a QualificationId, both unique; any
// QualificationNo/QualificationId in the body is ignored. UpdateQualification
// names the qualification by QualificationMainInfoFormDO.QualificationNo (or
// its QualificationId): unknown → RequestParametersError "qualification not
// found"; not rejected (approved or under review) → RequestParametersError
// "审批未通过的资质才可以修改,审批中的资质不可修改"; rejected → accepted with
// Result {}, and its status is decided again by the review rule on the new
// entity name. ApplySignatureIdent issues ids above 2^53, starting at
// 9007199254740993 and increasing, written as JSON integers; an `id` in the
// body re-edits that ident (its review is decided again), an unknown id →
// 1001. Qualifications and idents are global, not per access key.
//
// # Douyin behaviour
//
// Token: unknown appid → err_no 40015, wrong secret → 40017, grant_type not
// client_credential → 40020, a body that is not the expected JSON → 40014.
// Issuing a token cuts every earlier token of that appid to at most five
// minutes from Now. Server.TokenFetches counts the tokens issued per appid.
//
// add_role and get_class_auth read appid and access_token from the body:
// missing or unknown token, or a token of another appid → err_code 28001003;
// expired → 28001008. Then faults apply, then the field rules (appid and
// access_token stripped, messages.DecodePayload) → 28001007 naming every
// problem. Replies are HTTP 200 `{"err":{"err_code":N,"err_msg":"…"},…}` with
// a unique X-Tt-Logid header.
//
// add_role: the entity must be a known approved entity, else 28001007
// "entity not found or not approved". An entity holds each role once: adding
// a role the entity already holds → 28001007 "role already exists", unless
// that role's review was rejected (then the new filing replaces it). Success
// → {"add_role_taskid":"Role_<19 digits>","err":{"err_code":0,"err_msg":""}}.
// An institution role (2) also files a category certification (class auth)
// with industry_code 10000 and the request's industry_class, so that
// get_class_auth finds it afterwards; its audit_taskid is the digits of the
// task id. When a class auth already exists for that entity and class, the
// filing replaces online_qualification, or, when the online one is approved
// (audit_status 2) and the new one is not, goes to audit_qualification.
//
// get_class_auth returns the class auths matching merchant_entity_id,
// industry_code, industry_class (all three levels) and industry_role, and
// partner_entity_id when industry_role is 1; none → 28001007 "class auth not
// found".
//
// # Review rule
//
// A filing is rejected when its name contains "REJECT" (any case) or "驳回";
// otherwise approved when it contains "APPROVE" (any case) or "通过";
// otherwise under review. The name is QualificationEntity (VMS),
// businessInfo.businessCertificateName (SMS), institution_info.record_name
// (Douyin institution role) or partner_info.company_type (Douyin partner
// role). For Douyin a request header Aweme-Check-Type: OK (approved) or
// REJECT (rejected) takes precedence over the name. Douyin audit_status is 1
// under review, 2 approved, 3 rejected. Server.SetReview changes a status by
// hand.
//
// # Seed data
//
// A fresh (or Reset) sandbox holds:
//
//   - VMS qualification QUA164664762128220429, QualificationId 1234, entity
//     "ygcguW", rejected: an UpdateQualification naming it succeeds.
//   - VMS qualification QUA164664762128220430, QualificationId 1235, approved:
//     an UpdateQualification naming it is refused.
//   - Douyin approved entities E_7230706235463548989, E_7216554566647824422,
//     E_7178703725253394476, E_787907892525941398 and the teacher entity
//     I_7179078906694139948, holding no roles yet (so the add_role examples of
//     the vendor page succeed on a fresh sandbox).
//   - Class auths, all industry_code 10000:
//     merchant E_7230706235463548989, class 40000/40600/0, role 2, audit_status 2;
//     merchant E_787907892525941398, class 70000/70500/0, role 2, audit_status 1;
//     partner E_7178703725253394476 + merchant I_7179078906694139948,
//     class 40000/40600/0, role 1, audit_status 2.
//
// Issued numbers (QualificationId from 100001, SMS ids from
// 9007199254740993, Douyin task ids from Role_7179078900000000001) start
// again on Reset; RequestId and X-Tt-Logid never repeat.
//
// # Faults
//
// A Fault matches one of the five calls or the two reads
// (QueryQualificationAPI, SignatureIdentListAPI; API "" = any of these
// seven) or the token endpoint (API TokenAPI). Faults are tried in the order injected; the first
// that fires answers. A Fraction fault fires with that probability, drawn
// from a generator seeded with Config.Seed (Reset re-seeds it). Count limits
// the number of times a fault fires; Count 0 with Fraction 0 fires on every
// matching call until cleared. Latency is waited first (a client that gives
// up is recorded with HTTP status 499). Then:
//
//   - Code set: a Volcengine call answers the envelope with Error {Code,
//     CodeN, Message} (CodeN when the code is numeric or a known common
//     code); a Douyin call answers {"err_no":N,"err_tips":M,"err":{"err_code":N,
//     "err_msg":M}} where a non-numeric code becomes 28001005 (system busy);
//     the token endpoint answers {"err_no":N,"err_tips":M}, a non-numeric
//     code becoming -1. HTTP status is HTTPStatus, default 200.
//   - Code empty, HTTPStatus set and not 200: a bare status with a small
//     HTML body, as a gateway would send.
//   - Code empty, HTTPStatus 0 or 200: latency only; the call then proceeds
//     normally and is not marked as a fault.
//
// Faults apply after authentication (signature or token) and before the
// field rules; on the token endpoint after the appid, secret and grant_type
// checks.
//
// # Calls
//
// Every request to a vendor route is recorded as a Call with its raw body,
// including those refused by verification or answered by a fault. A
// Volcengine request whose Action/Version is unknown is recorded with API "".
package sandbox
