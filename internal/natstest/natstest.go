// Package natstest starts embedded NATS servers with JetStream for tests.
//
// Every helper registers its own cleanup with tb.Cleanup, so a test only
// asks for what it needs:
//
//	js, nc, srv := natstest.JetStream(t)
//	nc2 := natstest.Connect(t, srv) // a second client, e.g. another replica
//
// Servers listen on a random loopback port and keep their JetStream store
// under tb.TempDir().
package natstest

import (
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ReadyTimeout bounds how long Server waits for the server to accept
// connections and how long Connect's cleanup waits for a drain.
const ReadyTimeout = 10 * time.Second

// Server starts an embedded nats-server with JetStream on a random port of
// 127.0.0.1, its store under tb.TempDir(), logging and signal handling off.
// It fails the test when the server does not come up, and shuts the server
// down when the test ends.
func Server(tb testing.TB) *server.Server {
	tb.Helper()
	opts := &server.Options{
		Host:      "127.0.0.1",
		Port:      -1,
		JetStream: true,
		StoreDir:  tb.TempDir(),
		NoLog:     true,
		NoSigs:    true,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	go s.Start()
	// Registered before the readiness check so a half-started server is
	// stopped too. Cleanups run last-in first-out: connections made after
	// the server close before it shuts down.
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(ReadyTimeout) {
		tb.Fatalf("natstest: server not ready for connections within %s", ReadyTimeout)
	}
	if !s.JetStreamEnabled() {
		tb.Fatal("natstest: JetStream is not enabled on the embedded server")
	}
	return s
}

// Connect opens a client connection to s. When the test ends the connection
// is drained (pending messages delivered, subscriptions closed) and closed
// before s shuts down.
func Connect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	closed := make(chan struct{})
	nc, err := nats.Connect(s.ClientURL(),
		nats.Name(tb.Name()),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	)
	if err != nil {
		tb.Fatalf("natstest: connect to %s: %v", s.ClientURL(), err)
	}
	tb.Cleanup(func() {
		if err := nc.Drain(); err != nil {
			nc.Close()
			return
		}
		select {
		case <-closed:
		case <-time.After(ReadyTimeout):
			nc.Close()
		}
	})
	return nc
}

// JetStream starts a server (Server), connects to it (Connect) and returns
// a JetStream handle on that connection, with the connection and the server
// for tests that need a second client or the server itself.
func JetStream(tb testing.TB) (jetstream.JetStream, *nats.Conn, *server.Server) {
	tb.Helper()
	s := Server(tb)
	nc := Connect(tb, s)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("natstest: jetstream: %v", err)
	}
	return js, nc, s
}

// FreeAddr is a loopback address with a port free right now, for a
// listener a test starts.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
