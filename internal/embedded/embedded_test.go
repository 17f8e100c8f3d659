package embedded

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// recorder is a logger that keeps every line, with its level.
func recorder() (*zap.Logger, func() string) {
	core, logs := observer.New(zapcore.DebugLevel)
	return zap.New(core), func() string {
		var lines []string
		for _, e := range logs.All() {
			lines = append(lines, strings.ToUpper(e.Level.String())+" "+e.Message)
		}
		return strings.Join(lines, "\n")
	}
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func TestStartPersistsStreams(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s := start(t, Config{StoreDir: dir, Listen: "127.0.0.1:0"})
	if u := s.ClientURL(); !strings.HasPrefix(u, "nats://127.0.0.1:") || strings.HasSuffix(u, ":0") || strings.HasSuffix(u, ":-1") {
		t.Fatalf("ClientURL = %q, want the picked port", u)
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILING_TEST", Subjects: []string{"filing.test.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	if _, err := js.Publish(ctx, "filing.test.one", []byte("hello")); err != nil {
		t.Fatalf("publish: %v", err)
	}
	nc.Close()
	s.Shutdown()
	s.Shutdown() // a second call is harmless

	// Again on the same store: the stream and its message are there.
	s2 := start(t, Config{StoreDir: dir, Listen: "127.0.0.1:0"})
	nc2, err := nats.Connect(s2.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc2.Close()
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js2.Stream(ctx, "FILING_TEST")
	if err != nil {
		t.Fatalf("stream after restart: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Errorf("messages after restart = %d, want 1", info.State.Msgs)
	}
	msg, err := st.GetLastMsgForSubject(ctx, "filing.test.one")
	if err != nil || string(msg.Data) != "hello" {
		t.Errorf("last message = %v, %v", msg, err)
	}
}

// TestSyncsBeforeAcknowledging: JetStream runs with sync always, so an
// acknowledged write is on disk, not only in the page cache.
func TestSyncsBeforeAcknowledging(t *testing.T) {
	s := start(t, Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	jsc := s.ns.JetStreamConfig()
	if jsc == nil {
		t.Fatal("JetStream not enabled")
	}
	if !jsc.SyncAlways {
		t.Errorf("JetStream config %+v: SyncAlways is off, acknowledged writes may be lost on power loss", *jsc)
	}
}

func TestLoopbackAddresses(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		t.Run(listen, func(t *testing.T) {
			s, err := Start(context.Background(), Config{StoreDir: t.TempDir(), Listen: listen})
			if err != nil {
				if listen == "[::1]:0" && errors.Is(err, ErrListen) {
					t.Skipf("no IPv6 loopback here: %v", err)
				}
				t.Fatalf("Start: %v", err)
			}
			defer s.Shutdown()
			nc, err := nats.Connect(s.ClientURL())
			if err != nil {
				t.Fatalf("connect to %s: %v", s.ClientURL(), err)
			}
			nc.Close()
		})
	}
}

func TestNonLoopbackRefused(t *testing.T) {
	for _, listen := range []string{"0.0.0.0:4222", ":4222", "192.0.2.10:4222", "[::]:4222", "nats.example.com:4222"} {
		t.Run(listen, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Start(context.Background(), Config{StoreDir: dir, Listen: listen})
			if err == nil {
				s.Shutdown()
				t.Fatal("Start succeeded, want ErrNonLoopback")
			}
			if !errors.Is(err, ErrNonLoopback) || !strings.Contains(err.Error(), listen) {
				t.Errorf("err = %v, want ErrNonLoopback naming %s", err, listen)
			}
		})
	}
}

func TestAllowNonLoopback(t *testing.T) {
	s, err := Start(context.Background(), Config{StoreDir: t.TempDir(), Listen: "0.0.0.0:0", AllowNonLoopback: true})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer s.Shutdown()
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.ClientURL(), "nats://"))
	nc, err := nats.Connect("nats://127.0.0.1:" + port)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	nc.Close()
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	logger, logs := recorder()
	began := time.Now()
	s, err := Start(context.Background(), Config{StoreDir: t.TempDir(), Listen: addr, Logger: logger})
	if err == nil {
		s.Shutdown()
		t.Fatal("Start succeeded on a port in use")
	}
	if !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), addr) {
		t.Errorf("err = %v, want ErrListen naming %s", err, addr)
	}
	if d := time.Since(began); d > DefaultReadyTimeout/2 {
		t.Errorf("took %s: the failure should be reported at once", d)
	}
	text := logs()
	if !strings.Contains(text, "ERROR Error listening on port") {
		t.Errorf("logger did not get the listen error as an error:\n%s", text)
	}
	if strings.Contains(text, "FATAL") {
		t.Errorf("Fatalf was called:\n%s", text)
	}
}

// TestFatalLoggedBeforeSignalled: Start returns as soon as a fatal message
// is signalled, so the message must reach the caller's logger first;
// otherwise the caller may return (and read its log) before the line is
// there, which made TestPortInUse fail now and then.
func TestFatalLoggedBeforeSignalled(t *testing.T) {
	l := &logAdapter{fatal: make(chan string, 1)}
	var logged []string
	core, _ := observer.New(zapcore.DebugLevel)
	l.next = zap.New(core, zap.Hooks(func(e zapcore.Entry) error {
		if len(logged) == 0 && len(l.fatal) > 0 {
			t.Errorf("the fatal message was signalled before it was logged")
		}
		logged = append(logged, e.Message)
		return nil
	})).Sugar()
	l.Fatalf("Error listening on port: %s", "127.0.0.1:4222")
	l.Fatalf("a second one is logged but not signalled")
	if len(logged) != 2 {
		t.Errorf("logged %q, want both messages", logged)
	}
	select {
	case msg := <-l.fatal:
		if msg != "Error listening on port: 127.0.0.1:4222" {
			t.Errorf("signalled %q, want the first message", msg)
		}
	default:
		t.Fatal("nothing signalled")
	}
}

func TestLogger(t *testing.T) {
	logger, logs := recorder()
	s := start(t, Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0", Logger: logger, ServerName: "unit"})
	s.Shutdown()
	text := logs()
	for _, want := range []string{"INFO Starting nats-server", "unit", "INFO Server is ready"} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "DEBUG") {
		t.Error("debug lines without Debug")
	}
}

func TestBadListen(t *testing.T) {
	for _, listen := range []string{"4222", "127.0.0.1:http", "127.0.0.1:70000"} {
		_, err := Start(context.Background(), Config{StoreDir: t.TempDir(), Listen: listen})
		if !errors.Is(err, ErrBadListen) {
			t.Errorf("Listen %q: err = %v, want ErrBadListen", listen, err)
		}
	}
}

func TestCancelledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Start(ctx, Config{StoreDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestStoreDirUnusable(t *testing.T) {
	file := t.TempDir() + "/file"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Config{StoreDir: file + "/store", Listen: "127.0.0.1:0"})
	if !errors.Is(err, ErrStoreDir) {
		t.Errorf("err = %v, want ErrStoreDir", err)
	}
}
