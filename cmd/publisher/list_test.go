package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/readmodel"
)

// TestListPrintsNoControlCharacter: a merchant name (a metadata value,
// any bytes a submitter likes) printed by `publisher list` can neither
// forge a row with a line break nor reach the terminal with an escape
// sequence.
func TestListPrintsNoControlCharacter(t *testing.T) {
	page := readmodel.Page{Filings: []readmodel.Filing{{RequestID: "real-1", API: "vms.add_qualification", Account: "default", Status: "failed",
		ReceivedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		Merchant:   "shop\n2026-12-01 00:00:00  -  forged-9  vms.add_qualification  default  succeeded  QUA-1\x1b]52;c;ZWNobyBwd25lZA==\a"}}}
	var out bytes.Buffer
	printList(&out, page, map[string]int{"failed": 1})
	if strings.Contains(out.String(), "\x1b") || strings.Contains(out.String(), "\nforged") || strings.Count(out.String(), "\n2026-12-01") > 1 {
		t.Errorf("a submitter's merchant printed raw: a forged row and a terminal escape:\n%s", out.String())
	}
}
