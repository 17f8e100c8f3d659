package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/qualfile/qualfile/internal/filing"
	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/ledger"
	"github.com/qualfile/qualfile/messages"
)

// TestPermissionsOfTheREADME runs the pipeline on a server whose users
// have exactly the permissions of deploy/nats/permissions.conf (quoted in
// the README): the consumer files requests the publisher user sent, with
// its results, audit trail and ledger; the publisher user reads a trail;
// and the publisher user may not publish a result.
func TestPermissionsOfTheREADME(t *testing.T) {
	perms, err := os.ReadFile(filepath.Join("..", "deploy", "nats", "permissions.conf"))
	if err != nil {
		t.Fatal(err)
	}
	users := `authorization {
  users = [
    { user: qualfile-consumer, password: consumer-secret, permissions: $QUALFILE_CONSUMER }
    { user: qualfile-publisher, password: publisher-secret, permissions: $QUALFILE_PUBLISHER }
  ]
}
`
	n, err := startNATSWith(t, natsImage(t), "nats", []attachment{{newNetwork(t), []string{"nats"}}},
		map[string]string{"/qualfile-permissions.conf": string(perms), "": users}, "-js", "-sd", "/data", "-n", "single")
	if err != nil {
		t.Fatal(err)
	}
	dial := func(user, password string) *nats.Conn {
		nc, err := nats.Connect(n.url, nats.UserInfo(user, password), nats.Name(user))
		if err != nil {
			t.Fatalf("connect as %s: %v", user, err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	consumer := filingtest.New(t, filingtest.Options{NC: dial("qualfile-consumer", "consumer-secret"), Owner: "restricted"})
	consumer.Run()

	pubNC := dial("qualfile-publisher", "publisher-secret")
	pub, err := jetstream.New(pubNC)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	apis := []messages.API{messages.APIVMSAddQualification, messages.APISMSApplySignatureIdent, messages.APIDouyinGetClassAuth}
	for _, api := range apis {
		id := "perm-" + string(api)
		if _, err := pub.Publish(ctx, messages.Subjects{}.Request(api), filingtest.Example(t, api, id), jetstream.WithMsgID(id)); err != nil {
			t.Fatalf("the publisher user sends %s: %v", api, err)
		}
	}
	consumer.WaitResults(len(apis), 30*time.Second)
	for id, rs := range consumer.Results() {
		if len(rs) != 1 || rs[0].Status != messages.StatusSucceeded {
			t.Errorf("%s: %+v", id, rs)
		}
	}

	led, err := ledger.OpenExisting(ctx, pub, "FILING_LEDGER")
	if err != nil {
		t.Fatalf("the publisher user opens the ledger: %v", err)
	}
	trail, err := filing.ReadTrail(ctx, pub, led, messages.Subjects{}, "perm-vms.add_qualification")
	if err != nil || trail.Entry == nil || trail.Entry.State != ledger.StateDone || len(trail.Events) != 3 {
		t.Errorf("the publisher user's trail: %+v, %v", trail, err)
	}

	// Not allowed: the publisher user publishing a result.
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	defer cancelShort()
	if _, err := pub.Publish(short, messages.Subjects{}.Result(messages.APIVMSAddQualification), []byte(`{}`)); err == nil {
		t.Error("the publisher user published a result")
	}
}
