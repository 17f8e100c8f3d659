package queue

import (
	"strings"

	"github.com/qualfile/qualfile/messages"
)

// Every JetStream name qualfile uses is derived here from the subject
// prefix, so that two deployments with different prefixes on one server
// never share a stream, a bucket or an object store.

// Streams are the names of the streams.
type Streams struct {
	Requests, Results, Audit, Dead string
	// Files holds the chunks of files too large for a request (package
	// files), every tenant's on subjects of its own.
	Files string
}

// StreamNames derives stream names from the subject prefix: "filing" gives
// FILING_REQUESTS, FILING_RESULTS, FILING_AUDIT, FILING_DEAD and
// FILING_FILES; "acme.filing" gives ACME_FILING_REQUESTS and so on.
func StreamNames(s messages.Subjects) Streams {
	p := namePrefix(s)
	return Streams{Requests: p + "_REQUESTS", Results: p + "_RESULTS", Audit: p + "_AUDIT", Dead: p + "_DEAD", Files: p + "_FILES"}
}

// Buckets are the names of the KV buckets and the object store.
type Buckets struct {
	// Ledger is the idempotency ledger (package ledger).
	Ledger string
	// Tokens and TokenLocks hold the shared Douyin tokens and their fetch
	// locks (package tokenkv).
	Tokens, TokenLocks string
	// Objects is the object store of dead-letter bodies too large for a
	// message.
	Objects string
	// Health is the bucket the JetStream health probe writes to.
	Health string
	// Rate holds the slots of the vendors' rate limits, shared by the
	// replicas (package guard).
	Rate string
}

// BucketNames derives the bucket names from the subject prefix the way
// StreamNames does: "filing" gives FILING_LEDGER, FILING_TOKENS,
// FILING_TOKEN_LOCKS, FILING_OBJECTS, FILING_HEALTH and FILING_RATE.
func BucketNames(s messages.Subjects) Buckets {
	p := namePrefix(s)
	return Buckets{Ledger: p + "_LEDGER", Tokens: p + "_TOKENS", TokenLocks: p + "_TOKEN_LOCKS", Objects: p + "_OBJECTS", Health: p + "_HEALTH", Rate: p + "_RATE"}
}

// namePrefix is the prefix in upper case with '.' and '-' as '_', which
// makes a valid stream and bucket name of any valid subject prefix.
func namePrefix(s messages.Subjects) string {
	p := strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(s.Prefix))
	if p == "" {
		p = strings.ToUpper(messages.DefaultPrefix)
	}
	return p
}

// LegacyBuckets are the names the KV buckets had before they followed the
// subject prefix; every deployment on a server shared them.
var LegacyBuckets = []string{"QUALFILE_LEDGER", "QUALFILE_TOKENS", "QUALFILE_TOKEN_LOCKS"}
