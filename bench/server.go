package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// natsServer is the one NATS server of a run: an embedded nats-server in
// the bench process (so its CPU is the driver's), or an external server or
// cluster named by --nats-url.
type natsServer struct {
	url      string
	external bool
	ns       *server.Server
	storeDir string
}

// startNATS starts the embedded server on a free loopback port with a
// JetStream store in a temporary directory, or only records the external
// URL.
func startNATS(ctx context.Context, o options) (*natsServer, error) {
	if o.NATSURL != "" {
		return &natsServer{url: o.NATSURL, external: true}, nil
	}
	dir, err := os.MkdirTemp("", "qualfile-bench-nats-")
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName:             "qualfile-bench",
		Host:                   "127.0.0.1",
		Port:                   server.RANDOM_PORT,
		JetStream:              true,
		StoreDir:               dir,
		SyncAlways:             o.SyncAlways,
		NoSigs:                 true,
		NoLog:                  true,
		DisableJetStreamBanner: true,
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	go ns.Start()
	deadline := time.Now().Add(10 * time.Second)
	for !ns.ReadyForConnections(100 * time.Millisecond) {
		if ctx.Err() != nil || time.Now().After(deadline) {
			ns.Shutdown()
			ns.WaitForShutdown()
			_ = os.RemoveAll(dir)
			return nil, errors.Join(errors.New("embedded NATS server not ready within 10 s"), ctx.Err())
		}
	}
	if !ns.JetStreamEnabled() {
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.RemoveAll(dir)
		return nil, errors.New("embedded NATS server: JetStream is not enabled")
	}
	return &natsServer{url: ns.ClientURL(), ns: ns, storeDir: dir}, nil
}

// describe names the server for the report.
func (s *natsServer) describe() string {
	if s.external {
		return "external " + s.url
	}
	return "embedded in the driver, " + s.url
}

// close shuts the embedded server down and removes its store.
func (s *natsServer) close() {
	if s.ns == nil {
		return
	}
	s.ns.Shutdown()
	s.ns.WaitForShutdown()
	_ = os.RemoveAll(s.storeDir)
}
