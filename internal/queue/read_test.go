package queue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/qualfile/qualfile/internal/natstest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// TestRead reads a stream whole and by filter, in order, headers included,
// past a removed message, and leaves no consumer behind.
func TestRead(t *testing.T) {
	js, _, _ := natstest.JetStream(t)
	ctx := context.Background()
	subjects := messages.Subjects{Prefix: "filing"}
	if _, err := queue.EnsureStreams(ctx, js, queue.StreamsConfig{Subjects: subjects}); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		m := nats.NewMsg(subjects.Dead([]messages.API{messages.APIVMSAddQualification, messages.APIDouyinGetClassAuth}[i%2]))
		m.Data = []byte(fmt.Sprint(i))
		m.Header.Set(messages.HeaderRequestID, fmt.Sprint("id-", i))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	s, _ := js.Stream(ctx, "FILING_DEAD")
	if err := s.DeleteMsg(ctx, 3); err != nil {
		t.Fatal(err)
	}
	read := func(filter string) (out string) {
		msgs, err := queue.Read(ctx, js, "FILING_DEAD", filter)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			out += fmt.Sprintf("%d:%s:%s ", m.Sequence, m.Data, m.Header.Get(messages.HeaderRequestID))
		}
		return out
	}
	if got, want := read(""), "1:0:id-0 2:1:id-1 4:3:id-3 5:4:id-4 "; got != want {
		t.Errorf("the whole stream: %q, want %q", got, want)
	}
	if got, want := read(subjects.Dead(messages.APIVMSAddQualification)), "1:0:id-0 5:4:id-4 "; got != want {
		t.Errorf("by filter: %q, want %q", got, want)
	}
	// The server removes the readers' consumers once they are idle.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		info, err := s.Info(ctx)
		if err == nil && info.State.Consumers == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("consumers left behind: %+v %v", info.State, err)
			break
		}
	}
	if _, err := queue.Read(ctx, js, "NO_SUCH_STREAM", ""); err == nil {
		t.Error("read a stream that does not exist")
	}
}
