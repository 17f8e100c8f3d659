package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	dockernet "github.com/moby/moby/api/types/network"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/queue"
	"github.com/qualfile/qualfile/messages"
)

// TestImageRunsTheConsumer builds the deploy kit's image with
// scripts/image (deploy/Dockerfile, FROM scratch), runs the consumer
// container against the NATS container on a private network, with the
// simulator as the vendors, and files a request through it: the image
// works as shipped. Its admin listener answers /readyz on the published
// port.
func TestImageRunsTheConsumer(t *testing.T) {
	requireDocker(t)
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("scripts/image needs the docker command, not found: the image is not built")
	}
	tag := fmt.Sprintf("qualfile-image-test:%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "bash", "../scripts/image")
	build.Env = append(os.Environ(), "IMAGE="+tag, "VERSION=v0.0.0-test")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("scripts/image: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", tag).Run() })

	nw := newNetwork(t)
	n, err := startNATS(t, natsImage(t), "nats", []attachment{{nw, []string{"nats"}}}, "-js", "-sd", "/data", "-n", "single")
	if err != nil {
		t.Fatal(err)
	}
	adminPort, err := freeLoopbackPort()
	if err != nil {
		t.Fatal(err)
	}
	admin := dockernet.MustParsePort("9090/tcp")
	ctr, err := testcontainers.Run(ctx, tag,
		testcontainers.WithCmd("--sandbox", "--sandbox-with-external-nats", "--nats-url", "nats://nats:4222", "--admin-listen", "0.0.0.0:9090"),
		testcontainers.WithExposedPorts("9090/tcp"),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = dockernet.PortMap{admin: {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: strconv.Itoa(adminPort)}}}
		}),
		tcnetwork.WithNetwork([]string{"consumer"}, nw),
		testcontainers.WithWaitStrategy(wait.ForLog("qualfile consumer ready").WithStartupTimeout(60*time.Second)),
	)
	if ctr != nil {
		t.Cleanup(func() { terminate(t, "consumer", ctr) })
	}
	if err != nil {
		t.Fatalf("consumer container: %v", err)
	}

	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d %s", resp.StatusCode, body)
	}

	up := connect(t, "upstream", n.url)
	js, err := jetstream.New(up.Conn)
	if err != nil {
		t.Fatal(err)
	}
	id := "image-1"
	if _, err := js.Publish(ctx, messages.Subjects{}.Request(messages.APIVMSAddQualification),
		filingtest.Example(t, messages.APIVMSAddQualification, id), jetstream.WithMsgID(id)); err != nil {
		t.Fatal(err)
	}
	var res messages.Result
	filingtest.WaitFor(t, 30*time.Second, "the container's result", func() bool {
		s, err := js.Stream(ctx, queue.StreamNames(messages.Subjects{}).Results)
		if err != nil {
			return false
		}
		m, err := s.GetLastMsgForSubject(ctx, messages.Subjects{}.ResultFor(messages.APIVMSAddQualification, id))
		return err == nil && json.Unmarshal(m.Data, &res) == nil && res.RequestID == id
	})
	if res.Status != messages.StatusSucceeded || !strings.Contains(string(res.Result), "QualificationNo") {
		t.Errorf("result %+v", res)
	}
	logs, err := ctr.Logs(ctx)
	if err == nil {
		b, _ := io.ReadAll(logs)
		if !strings.Contains(string(b), `"version":"v0.0.0-test"`) {
			t.Errorf("the consumer's log does not name the version the image was built with:\n%.1500s", b)
		}
	}
}
