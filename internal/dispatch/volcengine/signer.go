// Package volcengine signs requests with Volcengine's HMAC-SHA256 scheme and
// calls the VMS and SMS qualification APIs.
package volcengine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"
)

// Algorithm is the only signing algorithm Volcengine uses.
const Algorithm = "HMAC-SHA256"

// TimeFormat is the layout of the X-Date header.
const TimeFormat = "20060102T150405Z"

// Credentials are an access key pair, with a session token for STS keys.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

// SigningInput is everything a signature covers. Signer builds it from a
// request; the sandbox builds it from what it received to verify one.
type SigningInput struct {
	Method        string
	Host          string
	Path          string
	Query         url.Values
	Header        http.Header
	SignedHeaders []string // lowercase names
	BodyHash      string   // lowercase hex SHA-256 of the body
	XDate         string
	Region        string
	Service       string
}

// Scope is {shortDate}/{region}/{service}/request.
func (in SigningInput) Scope() string {
	return shortDate(in.XDate) + "/" + in.Region + "/" + in.Service + "/request"
}

// CanonicalRequest is step 6 of docs/vendors.md.
func CanonicalRequest(in SigningInput) string {
	signed := sortedLower(in.SignedHeaders)
	var headers strings.Builder
	for _, name := range signed {
		var value string
		if name == "host" {
			value = canonicalHost(in.Host)
		} else {
			value = strings.Join(in.Header.Values(name), ",")
		}
		headers.WriteString(name + ":" + strings.TrimSpace(value) + "\n")
	}
	return strings.Join([]string{
		in.Method,
		canonicalURI(in.Path),
		canonicalQuery(in.Query),
		headers.String(),
		strings.Join(signed, ";"),
		in.BodyHash,
	}, "\n")
}

// StringToSign is step 8 of docs/vendors.md.
func StringToSign(in SigningInput) string {
	return strings.Join([]string{Algorithm, in.XDate, in.Scope(), hashHex([]byte(CanonicalRequest(in)))}, "\n")
}

// SigningKey derives the key of step 9; the secret's own bytes are used,
// never base64-decoded.
func SigningKey(secret, shortDate, region, service string) []byte {
	k := hmacSHA256([]byte(secret), shortDate)
	k = hmacSHA256(k, region)
	k = hmacSHA256(k, service)
	return hmacSHA256(k, "request")
}

// Signature is the lowercase hex signature of in under secret.
func Signature(secret string, in SigningInput) string {
	key := SigningKey(secret, shortDate(in.XDate), in.Region, in.Service)
	return hex.EncodeToString(hmacSHA256(key, StringToSign(in)))
}

// Authorization is a parsed Authorization header.
type Authorization struct {
	AccessKeyID   string
	ShortDate     string
	Region        string
	Service       string
	SignedHeaders []string
	Signature     string
}

// ParseAuthorization parses
// "HMAC-SHA256 Credential=AK/date/region/service/request, SignedHeaders=a;b, Signature=hex".
func ParseAuthorization(h string) (Authorization, error) {
	var a Authorization
	rest, ok := strings.CutPrefix(h, Algorithm+" ")
	if !ok {
		return a, fmt.Errorf("authorization: algorithm is not %s", Algorithm)
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return a, fmt.Errorf("authorization: malformed part %q", part)
		}
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) != 5 || f[4] != "request" {
				return a, fmt.Errorf("authorization: malformed credential %q", v)
			}
			a.AccessKeyID, a.ShortDate, a.Region, a.Service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			a.SignedHeaders = strings.Split(v, ";")
		case "Signature":
			a.Signature = v
		}
	}
	if a.AccessKeyID == "" || a.Signature == "" || len(a.SignedHeaders) == 0 {
		return a, fmt.Errorf("authorization: credential, signed headers and signature are required")
	}
	return a, nil
}

// Signer signs requests for one service in one region.
type Signer struct {
	Credentials Credentials
	Region      string
	Service     string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Sign sets X-Date, X-Content-Sha256, X-Security-Token (for STS keys) and
// Authorization on req, whose body is body.
func (s Signer) Sign(req *http.Request, body []byte) error {
	if s.Credentials.AccessKeyID == "" || s.Credentials.SecretAccessKey == "" {
		return ErrNoCredentials
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	xdate := now().UTC().Format(TimeFormat)
	bodyHash := hashHex(body)
	req.Header.Set("X-Date", xdate)
	req.Header.Set("X-Content-Sha256", bodyHash)
	signed := []string{"host", "x-content-sha256", "x-date"}
	if req.Header.Get("Content-Type") != "" {
		signed = append(signed, "content-type")
	}
	if s.Credentials.SessionToken != "" {
		req.Header.Set("X-Security-Token", s.Credentials.SessionToken)
		signed = append(signed, "x-security-token")
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	in := SigningInput{
		Method:        req.Method,
		Host:          host,
		Path:          req.URL.Path,
		Query:         req.URL.Query(),
		Header:        req.Header,
		SignedHeaders: signed,
		BodyHash:      bodyHash,
		XDate:         xdate,
		Region:        s.Region,
		Service:       s.Service,
	}
	req.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=%s, Signature=%s",
		Algorithm, s.Credentials.AccessKeyID, in.Scope(), strings.Join(sortedLower(signed), ";"), Signature(s.Credentials.SecretAccessKey, in)))
	return nil
}

func shortDate(xdate string) string {
	if len(xdate) < 8 {
		return xdate
	}
	return xdate[:8]
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func sortedLower(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = strings.ToLower(strings.TrimSpace(n))
	}
	sort.Strings(out)
	return out
}

func canonicalHost(host string) string {
	if h, port, err := net.SplitHostPort(host); err == nil && (port == "80" || port == "443") {
		return h
	}
	return host
}

func canonicalURI(path string) string {
	if path == "" {
		return "/"
	}
	segs := strings.Split(path, "/")
	for i, s := range segs {
		segs[i] = rfc3986(s)
	}
	return strings.Join(segs, "/")
}

func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		vals := append([]string(nil), q[k]...)
		sort.Strings(vals)
		for _, v := range vals {
			parts = append(parts, rfc3986(k)+"="+rfc3986(v))
		}
	}
	return strings.Join(parts, "&")
}

// rfc3986 percent-encodes everything but the unreserved characters.
func rfc3986(s string) string {
	const hexdig = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hexdig[c>>4])
		b.WriteByte(hexdig[c&15])
	}
	return b.String()
}
