package natstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/natstest"
)

func TestJetStream(t *testing.T) {
	js, nc, srv := natstest.JetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.one", []byte("hello")); err != nil {
		t.Fatal(err)
	}

	// A second client sees what the first stored.
	nc2 := natstest.Connect(t, srv)
	if nc2 == nc {
		t.Fatal("Connect returned the same connection")
	}
	js2, err := jetstream.New(nc2)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js2.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetLastMsgForSubject(ctx, "t.one")
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != "hello" {
		t.Fatalf("got %q, want hello", m.Data)
	}
}

func TestServersAreIndependent(t *testing.T) {
	a, b := natstest.Server(t), natstest.Server(t)
	if a.ClientURL() == b.ClientURL() {
		t.Fatalf("both servers listen on %s", a.ClientURL())
	}
}
