package queue_test

import (
	"testing"

	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

func TestBucketNamesFollowPrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   queue.Buckets
	}{
		{"", queue.Buckets{Ledger: "FILING_LEDGER", Tokens: "FILING_TOKENS", TokenLocks: "FILING_TOKEN_LOCKS", Objects: "FILING_OBJECTS", Health: "FILING_HEALTH", Rate: "FILING_RATE"}},
		{"filing", queue.Buckets{Ledger: "FILING_LEDGER", Tokens: "FILING_TOKENS", TokenLocks: "FILING_TOKEN_LOCKS", Objects: "FILING_OBJECTS", Health: "FILING_HEALTH", Rate: "FILING_RATE"}},
		{"staging.filing", queue.Buckets{Ledger: "STAGING_FILING_LEDGER", Tokens: "STAGING_FILING_TOKENS", TokenLocks: "STAGING_FILING_TOKEN_LOCKS", Objects: "STAGING_FILING_OBJECTS", Health: "STAGING_FILING_HEALTH", Rate: "STAGING_FILING_RATE"}},
		{"acme.filing-v2", queue.Buckets{Ledger: "ACME_FILING_V2_LEDGER", Tokens: "ACME_FILING_V2_TOKENS", TokenLocks: "ACME_FILING_V2_TOKEN_LOCKS", Objects: "ACME_FILING_V2_OBJECTS", Health: "ACME_FILING_V2_HEALTH", Rate: "ACME_FILING_V2_RATE"}},
	} {
		t.Run(tc.prefix, func(t *testing.T) {
			s := messages.Subjects{Prefix: tc.prefix}
			if got := queue.BucketNames(s); got != tc.want {
				t.Errorf("BucketNames(%q) = %+v, want %+v", tc.prefix, got, tc.want)
			}
			// Streams and buckets share the prefix part of their names.
			n := queue.StreamNames(s)
			if want := tc.want.Ledger[:len(tc.want.Ledger)-len("_LEDGER")] + "_REQUESTS"; n.Requests != want {
				t.Errorf("StreamNames(%q).Requests = %s, want %s", tc.prefix, n.Requests, want)
			}
			if want := tc.want.Ledger[:len(tc.want.Ledger)-len("_LEDGER")] + "_FILES"; n.Files != want {
				t.Errorf("StreamNames(%q).Files = %s, want %s", tc.prefix, n.Files, want)
			}
		})
	}
}
