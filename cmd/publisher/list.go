package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/qualfile/qualfile/internal/readmodel"
	"github.com/qualfile/qualfile/messages"
)

// runList lists filings with the console's filters, from a read model of
// its own that it brings up to date from the streams first (the first
// time from their start): a table, or JSON with --output json.
func runList(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs, conn := newConnFlagSet("list", getenv, stdout, stderr)
	var f readmodel.Filter
	var api, from, to, all string
	fs.StringVar(&f.Status, "status", "", "in_progress, succeeded, ambiguous, failed or rejected")
	fs.StringVar(&api, "api", "", "the call: "+apiNames())
	fs.StringVar(&all, "tenants", "", "whose filings: every tenant's (all), or only --tenant's (the default)")
	fs.StringVar(&f.Account, "account", "", "the account")
	fs.StringVar(&from, "from", "", "received at or after this time (RFC 3339, or a date: 2026-12-01, UTC)")
	fs.StringVar(&to, "to", "", "received before this time (RFC 3339, or a date: the end of that day, UTC)")
	fs.StringVar(&f.Query, "q", "", "the start of a request id, vendor record, upstream request id or metadata value (the merchant)")
	fs.IntVar(&f.Limit, "limit", readmodel.DefaultLimit, fmt.Sprintf("filings to list, at most %d", readmodel.MaxLimit))
	fs.StringVar(&f.After, "after", "", "the next page: the cursor the last page ended with")
	output := fs.String("output", "table", "table or json")
	cache := fs.String("cache", getenv("QUALFILE_LIST_CACHE"), "the read model's file (env QUALFILE_LIST_CACHE; default one per server and prefix in the user's cache folder)")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *output != "table" && *output != "json" {
		return usagef("--output %q: table or json", *output)
	}
	f.API = messages.API(api)
	switch {
	case all == "all":
	case all != "":
		return usagef("--tenants %q: all, or leave it out", all)
	case conn.tenant == "":
		f.Tenant = readmodel.DefaultTenant
	default:
		f.Tenant = conn.tenant
	}
	var err error
	if f.From, err = when(from, false); err != nil {
		return usagef("--from: %v", err)
	}
	if f.To, err = when(to, true); err != nil {
		return usagef("--to: %v", err)
	}
	if err := f.Validate(); err != nil {
		return usagef("%v", err)
	}
	nc, js, err := conn.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	path, err := listCache(*cache, nc.ConnectedUrlRedacted(), conn.subjects().Root())
	if err != nil {
		return err
	}
	m, err := readmodel.Open(ctx, path, conn.subjects().For(""))
	if err != nil {
		return err
	}
	defer m.Close()
	start := time.Now()
	if err := m.CatchUp(ctx, js); err != nil {
		return fmt.Errorf("reading the streams: %w", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		fmt.Fprintf(stderr, "publisher: brought the list's read model (%s) up to date in %s\n", path, d.Round(time.Millisecond))
	}
	page, err := m.Filings(ctx, f)
	if err != nil {
		return err
	}
	counts, err := m.Counts(ctx, f)
	if err != nil {
		return err
	}
	if *output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if page.Filings == nil {
			page.Filings = []readmodel.Filing{}
		}
		return enc.Encode(map[string]any{"filings": page.Filings, "next": page.Next, "counts": counts})
	}
	printList(stdout, page, counts)
	return nil
}

// printList writes a page of filings as a table, with the counts.
func printList(w io.Writer, page readmodel.Page, counts map[string]int) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECEIVED (UTC)\tTENANT\tREQUEST ID\tAPI\tACCOUNT\tSTATUS\tCODE\tRECORD\tMERCHANT")
	for _, fl := range page.Filings {
		tenant := fl.Tenant
		if tenant == "" {
			tenant = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", fl.ReceivedAt.Format("2006-01-02 15:04:05"), tenant, shown(fl.RequestID), fl.API,
			shown(fl.Account), fl.Status, shown(fl.Code), shown(fl.Record), shown(fl.Merchant))
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d listed;", len(page.Filings))
	for _, s := range readmodel.Statuses {
		fmt.Fprintf(w, " %s %d", s, counts[s])
	}
	fmt.Fprintln(w)
	if page.Next != "" {
		fmt.Fprintf(w, "more: --after %s\n", page.Next)
	}
}

// listCache is the file of list's read model: path, or one per server
// and prefix in the user's cache folder.
func listCache(path, server, prefix string) (string, error) {
	if path == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("no cache folder: give --cache FILE: %w", err)
		}
		sum := sha256.Sum256([]byte(server + "\x00" + prefix))
		path = filepath.Join(dir, "qualfile", "list-"+hex.EncodeToString(sum[:8])+".db")
	}
	return path, os.MkdirAll(filepath.Dir(path), 0o700)
}

// when reads a time flag: RFC 3339, or a date in UTC (its start, or with
// end its end).
func when(s string, end bool) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: an RFC 3339 time or a date such as 2026-12-01", s)
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

// shown is a value a submitter chose, fit for a terminal: no control
// character (a line break would forge a row, an escape sequence reach the
// terminal), no tab (the table's separator).
func shown(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '\uFFFD'
		}
		return r
	}, s)
}
