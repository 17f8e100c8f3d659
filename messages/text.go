package messages

import (
	"strings"
	"time"
	"unicode/utf8"
)

// DateLayout is the vendors' date format, YYYY-MM-DD.
const DateLayout = "2006-01-02"

// Permanent is the Douyin spelling of an ID card that never expires.
const Permanent = "长期有效"

// Chars counts characters as the SMS page does: one per character.
func Chars(s string) int { return utf8.RuneCountInString(s) }

// WideLen counts characters as the Douyin pages do ("汉字占 2 字符"): an
// ASCII character is 1 and any other character 2, as in a GBK byte count.
func WideLen(s string) int {
	n := 0
	for _, r := range s {
		if r < 0x80 {
			n++
		} else {
			n += 2
		}
	}
	return n
}

// ParseDate parses a YYYY-MM-DD date strictly.
func ParseDate(s string) (time.Time, bool) {
	if len(s) != len(DateLayout) {
		return time.Time{}, false
	}
	t, err := time.Parse(DateLayout, s)
	return t, err == nil
}

// Truncate cuts s to at most n bytes on a rune boundary, marking the cut
// with "…" (so the result may be up to len("…") bytes longer than n), and
// replaces invalid UTF-8 with U+FFFD: for text from a message, a vendor or
// a file, quoted in an error or a log line.
func Truncate(s string, n int) string {
	if !utf8.ValidString(s) {
		s = string([]rune(s)) // invalid bytes become U+FFFD
	}
	if len(s) <= n {
		return s
	}
	cut := max(n, 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// HeaderValue makes a value from a message fit one header line: at most
// n bytes, control characters replaced.
func HeaderValue(s string, n int) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, Truncate(s, n))
}
