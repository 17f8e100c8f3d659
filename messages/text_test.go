package messages

import "testing"

func TestTruncate(t *testing.T) {
	tests := []struct {
		s    string
		n    int
		want string
	}{
		{"", 3, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc…"},
		{"abcd", 0, "…"},
		{"abcd", -1, "…"},
		// 长 and 期 are 3 bytes each: no cut inside a rune.
		{"长期有效", 6, "长期…"},
		{"长期有效", 7, "长期…"},
		{"长期有效", 8, "长期…"},
		{"长期有效", 12, "长期有效"},
		// Invalid UTF-8 becomes U+FFFD (3 bytes) before the length is measured.
		{"a\xffb", 5, "a\uFFFDb"},
		{"a\xffb", 3, "a…"},
	}
	for _, tt := range tests {
		if got := Truncate(tt.s, tt.n); got != tt.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}
