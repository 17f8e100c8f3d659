// Package readmodel is a searchable projection of one deployment's
// filings: the results, audit and dead-letter streams, folded into an
// embedded SQLite database. It is a cache, never the truth: every row is
// derived from stored messages, each stream's position is kept in the
// same transaction as what it applied, and Rebuild starts it anew from the
// streams. A filing's history and its proof are read from the streams
// themselves (operator.ReadTrail); this model finds filings, counts them
// and draws the overview.
package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver: the image stays FROM scratch

	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// schemaVersion is the version of the tables below: a model of another
// version is rebuilt from the streams, never migrated (it is a cache).
const schemaVersion = 1

// schema is the model's tables. Times are Unix milliseconds, UTC.
//
//   - filings: one row per filing (tenant, key), its outcome the result
//     in force, the one no other supersedes; key is the request id, or
//     "#seq:<n>" (which no id can be) for a request rejected without a
//     usable one.
//   - terms: what a search finds a filing by: its id, its vendor record,
//     its upstream request ids, its metadata values.
//   - totals: how many filings there are of each tenant, api, account
//     and status, kept with the filings, so that counts without a time
//     or a search need not count them one by one.
//   - seen: the audit events applied, by a digest of their identity, so
//     that a copy of one is counted once.
//   - stats: audit events per hour, api, event and class, with the
//     vendor's latency of attempts.
//   - dead: the dead letters still in their stream.
//   - cursors: each stream's last applied sequence and its creation time
//     (a stream created anew starts the model anew).
const schema = `
CREATE TABLE filings (
	id INTEGER PRIMARY KEY,
	tenant TEXT NOT NULL,
	key TEXT NOT NULL,
	request_id TEXT NOT NULL,
	api TEXT NOT NULL,
	account TEXT NOT NULL,
	status TEXT NOT NULL,
	code TEXT NOT NULL DEFAULT '',
	class TEXT NOT NULL DEFAULT '',
	attempts INTEGER NOT NULL DEFAULT 0,
	record TEXT NOT NULL DEFAULT '',
	merchant TEXT NOT NULL DEFAULT '',
	metadata TEXT NOT NULL DEFAULT '',
	received_at INTEGER NOT NULL,
	completed_at INTEGER NOT NULL DEFAULT 0,
	result_seq INTEGER NOT NULL DEFAULT 0,
	last_event TEXT NOT NULL DEFAULT '',
	updated_at INTEGER NOT NULL DEFAULT 0,
	UNIQUE (tenant, key)
);
CREATE INDEX filings_received ON filings (received_at);
CREATE INDEX filings_status ON filings (status, received_at);
CREATE INDEX filings_api ON filings (api, status, received_at);
CREATE INDEX filings_tenant ON filings (tenant, status, received_at);
CREATE INDEX filings_account ON filings (account, status, received_at);
CREATE TABLE terms (
	term TEXT NOT NULL,
	filing INTEGER NOT NULL,
	PRIMARY KEY (term, filing)
) WITHOUT ROWID;
CREATE TABLE totals (
	tenant TEXT NOT NULL,
	api TEXT NOT NULL,
	account TEXT NOT NULL,
	status TEXT NOT NULL,
	n INTEGER NOT NULL,
	PRIMARY KEY (tenant, api, account, status)
) WITHOUT ROWID;
CREATE TABLE seen (h INTEGER PRIMARY KEY);
CREATE TABLE stats (
	hour INTEGER NOT NULL,
	api TEXT NOT NULL,
	event TEXT NOT NULL,
	class TEXT NOT NULL,
	n INTEGER NOT NULL,
	ms_sum REAL NOT NULL,
	ms_max REAL NOT NULL,
	PRIMARY KEY (hour, api, event, class)
) WITHOUT ROWID;
CREATE TABLE dead (
	seq INTEGER PRIMARY KEY,
	tenant TEXT NOT NULL,
	request_id TEXT NOT NULL,
	api TEXT NOT NULL,
	reason TEXT NOT NULL,
	class TEXT NOT NULL,
	dead_at INTEGER NOT NULL,
	deliveries INTEGER NOT NULL
);
CREATE INDEX dead_request ON dead (tenant, request_id);
CREATE TABLE cursors (
	stream TEXT PRIMARY KEY,
	seq INTEGER NOT NULL,
	created INTEGER NOT NULL
);
`

// Model is the read model of one deployment (one subject prefix).
type Model struct {
	db       *sql.DB
	path     string
	subjects messages.Subjects
	streams  queue.Streams
}

// Open opens the model kept in the SQLite file at path, creating it, or
// starting it anew when it was made by another version of its tables.
func Open(ctx context.Context, path string, subjects messages.Subjects) (*Model, error) {
	if path == "" {
		return nil, errors.New("readmodel: a path is required")
	}
	m := &Model{path: path, subjects: subjects.For(""), streams: queue.StreamNames(subjects)}
	if err := m.open(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Model) open(ctx context.Context) error {
	// WAL: readers never wait for the projection's writes; NORMAL sync:
	// a cache rebuilt from the streams need not survive a power cut.
	db, err := sql.Open("sqlite", "file:"+m.path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(OFF)")
	if err != nil {
		return err
	}
	var version int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		db.Close()
		return fmt.Errorf("readmodel: %s: %w", m.path, err)
	}
	if version != schemaVersion {
		if version != 0 {
			// Made by another version: a cache, started anew.
			db.Close()
			if err := removeFiles(m.path); err != nil {
				return err
			}
			return m.open(ctx)
		}
		if _, err := db.ExecContext(ctx, schema+fmt.Sprintf("PRAGMA user_version = %d;", schemaVersion)); err != nil {
			db.Close()
			return fmt.Errorf("readmodel: creating the tables: %w", err)
		}
	}
	m.db = db
	return nil
}

// Close closes the database.
func (m *Model) Close() error { return m.db.Close() }

// Rebuild empties the model: following the streams again builds it from
// their first message.
func (m *Model) Rebuild(ctx context.Context) error {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, table := range []string{"filings", "terms", "totals", "seen", "stats", "dead", "cursors"} {
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+table); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// Size is the size of the model's files on disk, in bytes.
func (m *Model) Size() int64 {
	var n int64
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if fi, err := os.Stat(m.path + suffix); err == nil {
			n += fi.Size()
		}
	}
	return n
}

func removeFiles(path string) error {
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("readmodel: removing a model of another version: %w", err)
		}
	}
	return nil
}
