package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	dockernet "github.com/moby/moby/api/types/network"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"
	tcnetwork "github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// envIntegration set to 1 makes a missing Docker daemon a test failure
// rather than a skip.
const envIntegration = "QUALFILE_INTEGRATION"

const (
	natsModule      = "github.com/nats-io/nats-server/v2"
	natsImageRepo   = "qualfile-nats-test"
	natsClientPort  = "4222/tcp"
	natsMonitorPort = "8222/tcp"
	// natsReadyLog is what nats-server logs once it accepts clients.
	natsReadyLog = "Server is ready"
)

// natsConfig is the configuration file every server runs with (flags add
// JetStream's store, names and routes): JetStream syncs each write before
// acknowledging it, as docs/configuration.md asks of production servers.
const (
	natsConfigPath = "/nats.conf"
	natsConfig     = "jetstream {\n  sync_interval: always\n}\n"
)

// natsDockerfile wraps the host-built, statically linked nats-server.
const natsDockerfile = `FROM scratch
COPY nats-server /nats-server
ENTRYPOINT ["/nats-server"]
`

func TestMain(m *testing.M) {
	// The reaper image cannot be pulled here (no registry), and every test
	// terminates its own containers and removes its own networks.
	// testcontainers reads its configuration once, so this must happen
	// before the first testcontainers call.
	if err := os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true"); err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		os.Exit(2)
	}
	code := m.Run()
	if image.dir != "" {
		_ = os.RemoveAll(image.dir)
	}
	os.Exit(code)
}

// --- Docker availability ---------------------------------------------------

var docker struct {
	once sync.Once
	err  error
}

// requireDocker skips the test when no Docker daemon answers, or fails it
// when QUALFILE_INTEGRATION=1 asks for the integration tests to run.
func requireDocker(tb testing.TB) {
	tb.Helper()
	docker.once.Do(func() { docker.err = dockerAvailable() })
	if docker.err == nil {
		return
	}
	if os.Getenv(envIntegration) == "1" {
		tb.Fatalf("integration: %s=1 but no Docker daemon answers: %v", envIntegration, docker.err)
	}
	tb.Skipf("integration: skipped, no Docker daemon answers (set %s=1 to make this a failure): %v", envIntegration, docker.err)
}

func dockerAvailable() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("docker client: %v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Health(ctx)
}

// --- the nats-server image ---------------------------------------------------

// image is built once per test binary and kept (tagged with the nats-server
// version) so later runs reuse its layers.
var image struct {
	once sync.Once
	tag  string
	dir  string // build context: the binary and the Dockerfile
	err  error
}

// natsImage returns the tag of the nats-server image, building it on first
// use: `go build` of the nats-server version pinned in go.mod, then a FROM
// scratch image around it.
func natsImage(tb testing.TB) string {
	tb.Helper()
	requireDocker(tb)
	image.once.Do(func() {
		start := time.Now()
		image.tag, image.err = buildNATSImage()
		if image.err == nil {
			tb.Logf("built image %s in %s", image.tag, time.Since(start).Round(time.Millisecond))
		}
	})
	if image.err != nil {
		tb.Fatalf("integration: nats-server image: %v", image.err)
	}
	return image.tag
}

func buildNATSImage() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := filepath.Abs("..") // the module root: go.mod pins the version
	if err != nil {
		return "", err
	}
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(goTool); err != nil {
		goTool = "go"
	}
	out, err := goCmd(ctx, goTool, root, nil, "list", "-m", "-f", "{{.Version}}", natsModule)
	if err != nil {
		return "", err
	}
	version := strings.TrimSpace(out)
	if version == "" {
		return "", fmt.Errorf("no version of %s in go.mod", natsModule)
	}
	if image.dir, err = os.MkdirTemp("", "qualfile-nats-image-"); err != nil {
		return "", err
	}
	// Static, for a scratch image; linux whatever the host, the daemon's
	// architecture being the host's.
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + runtime.GOARCH}
	if _, err := goCmd(ctx, goTool, root, env, "build", "-trimpath", "-o", filepath.Join(image.dir, "nats-server"), natsModule); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(image.dir, "Dockerfile"), []byte(natsDockerfile), 0o644); err != nil {
		return "", err
	}
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		return "", err
	}
	defer p.Close()
	var buildLog bytes.Buffer
	tag, err := p.BuildImage(ctx, &testcontainers.ContainerRequest{FromDockerfile: testcontainers.FromDockerfile{
		Context:        image.dir,
		Dockerfile:     "Dockerfile",
		Repo:           natsImageRepo,
		Tag:            version,
		KeepImage:      true,
		BuildLogWriter: &buildLog,
	}})
	if err != nil {
		return "", fmt.Errorf("docker build: %w\n%s", err, buildLog.String())
	}
	return tag, nil
}

func goCmd(ctx context.Context, goTool, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, goTool, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// --- containers --------------------------------------------------------------

// natsNode is one nats-server container. Its client and monitoring ports
// are published on 127.0.0.1 only, on fixed host ports so that a restart
// keeps the URLs.
type natsNode struct {
	name   string
	url    string // nats://127.0.0.1:<port>
	monURL string // http://127.0.0.1:<port>, the monitoring endpoints
	ctr    testcontainers.Container
	// routes is the network that carries the cluster's routes (nil for a
	// single server); the client port is published from another one.
	routes *testcontainers.DockerNetwork
}

// attachment is a network a container joins, with its aliases there.
type attachment struct {
	nw      *testcontainers.DockerNetwork
	aliases []string
}

// newNetwork creates a private Docker network, removed when the test ends
// (after the containers on it, cleanups running last-in first-out).
func newNetwork(tb testing.TB, opts ...tcnetwork.NetworkCustomizer) *testcontainers.DockerNetwork {
	tb.Helper()
	requireDocker(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nw, err := tcnetwork.New(ctx, opts...)
	if err != nil {
		tb.Fatalf("integration: docker network: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := nw.Remove(ctx); err != nil {
			tb.Errorf("integration: removing network %s: %v", nw.Name, err)
		}
	})
	return nw
}

// startNATS starts a nats-server container with the given arguments and
// waits until it accepts clients. The first network carries the published
// ports (client 4222, monitoring 8222, both on 127.0.0.1 only); the others
// are joined as well, each with its aliases. The container is terminated
// when the test ends; when the test failed, its log is written to the test
// log first. Safe to call from several goroutines.
func startNATS(tb testing.TB, img, name string, nets []attachment, args ...string) (*natsNode, error) {
	return startNATSWith(tb, img, name, nets, nil, args...)
}

// startNATSWith is startNATS with more files in the container (more
// configuration, included from /nats.conf), by path; files[""] is added to
// /nats.conf itself.
func startNATSWith(tb testing.TB, img, name string, nets []attachment, files map[string]string, args ...string) (*natsNode, error) {
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	monPort, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	clientPort := dockernet.MustParsePort(natsClientPort)
	monitorPort := dockernet.MustParsePort(natsMonitorPort)
	loopback := netip.MustParseAddr("127.0.0.1")
	opts := []testcontainers.ContainerCustomizer{
		testcontainers.WithCmd(slices.Concat([]string{"-c", natsConfigPath}, args, []string{"-m", strings.TrimSuffix(natsMonitorPort, "/tcp")})...),
		testcontainers.WithFiles(configFiles(files)...),
		testcontainers.WithExposedPorts(natsClientPort, natsMonitorPort),
		testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
			hc.PortBindings = dockernet.PortMap{
				clientPort:  {{HostIP: loopback, HostPort: strconv.Itoa(port)}},
				monitorPort: {{HostIP: loopback, HostPort: strconv.Itoa(monPort)}},
			}
		}),
		testcontainers.WithWaitStrategy(wait.ForLog(natsReadyLog).WithStartupTimeout(30 * time.Second)),
	}
	for _, a := range nets {
		opts = append(opts, tcnetwork.WithNetwork(a.aliases, a.nw))
	}
	ctr, err := testcontainers.Run(ctx, img, opts...)
	if ctr != nil {
		tb.Cleanup(func() { terminate(tb, name, ctr) })
	}
	if err != nil {
		return nil, fmt.Errorf("start nats-server %s: %w", name, err)
	}
	n := &natsNode{name: name, url: fmt.Sprintf("nats://127.0.0.1:%d", port), monURL: fmt.Sprintf("http://127.0.0.1:%d", monPort), ctr: ctr}
	if err := n.checkLoopbackOnly(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

func terminate(tb testing.TB, name string, ctr testcontainers.Container) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if tb.Failed() {
		if rc, err := ctr.Logs(ctx); err == nil {
			b, _ := io.ReadAll(rc)
			_ = rc.Close()
			tb.Logf("nats-server %s log (last 40 lines):\n%s", name, lastLines(string(b), 40))
		}
	}
	timeout := 5 * time.Second
	if err := ctr.Terminate(ctx, testcontainers.StopTimeout(timeout)); err != nil {
		tb.Errorf("integration: terminating %s: %v", name, err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// checkLoopbackOnly fails unless every published port is bound to a
// loopback address of the host.
func (n *natsNode) checkLoopbackOnly(ctx context.Context) error {
	info, err := n.ctr.Inspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect %s: %w", n.name, err)
	}
	if info.NetworkSettings == nil || len(info.NetworkSettings.Ports) == 0 {
		return fmt.Errorf("%s: no published ports", n.name)
	}
	for port, bindings := range info.NetworkSettings.Ports {
		for _, b := range bindings {
			if !b.HostIP.IsLoopback() {
				return fmt.Errorf("%s: port %s published on %s, want loopback only", n.name, port, b.HostIP)
			}
		}
	}
	return nil
}

// stop stops the container (SIGTERM, then SIGKILL after 10s); its store
// under /data is kept for start.
func (n *natsNode) stop(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	timeout := 10 * time.Second
	if err := n.ctr.Stop(ctx, &timeout); err != nil {
		tb.Fatalf("integration: stopping %s: %v", n.name, err)
	}
}

// start starts a stopped container again and waits until it accepts
// clients on the same host port.
func (n *natsNode) start(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := n.ctr.Start(ctx); err != nil {
		tb.Fatalf("integration: starting %s again: %v", n.name, err)
	}
	for {
		nc, err := nats.Connect(n.url, nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
			return
		}
		select {
		case <-ctx.Done():
			tb.Fatalf("integration: %s not accepting clients after restart: %v", n.name, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer starts one nats-server with JetStream on its own network.
func startServer(tb testing.TB) *natsNode {
	tb.Helper()
	img := natsImage(tb)
	nw := newNetwork(tb)
	n, err := startNATS(tb, img, "nats", []attachment{{nw, []string{"nats"}}}, "-js", "-sd", "/data", "-n", "single")
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

// startCluster starts a JetStream cluster of size nodes (n1, n2, …). Each
// node is on two private networks: the routes run on an internal one, where
// the nodes know each other by name (and advertise that name, never an
// address, so no route can form another way), and the client and monitoring
// ports are published, on 127.0.0.1 only, from the other. So a node can be
// cut off from the cluster (cutRoutes) while its clients stay connected.
// The routes network is internal: it never provides a container's gateway,
// so Docker keeps the published ports on the client network and
// disconnecting the routes leaves client connections alone. Clients are not
// told the servers' addresses (--no_advertise).
func startCluster(tb testing.TB, size int) []*natsNode {
	tb.Helper()
	img := natsImage(tb)
	clients := newNetwork(tb)
	routesNet := newNetwork(tb, tcnetwork.WithInternal())
	routes := make([]string, size)
	for i := range size {
		routes[i] = fmt.Sprintf("nats://n%d:6222", i+1)
	}
	nodes := make([]*natsNode, size)
	errs := make([]error, size)
	var wg sync.WaitGroup
	for i := range size {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("n%d", i+1)
			nodes[i], errs[i] = startNATS(tb, img, name, []attachment{{clients, nil}, {routesNet, []string{name}}},
				"-js", "-sd", "/data", "-n", name,
				"--cluster_name", "qf", "--cluster", "nats://0.0.0.0:6222", "--cluster_advertise", name+":6222",
				"--routes", strings.Join(routes, ","), "--no_advertise")
			if nodes[i] != nil {
				nodes[i].routes = routesNet
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
	return nodes
}

func urls(nodes ...*natsNode) []string {
	out := make([]string, len(nodes))
	for i, n := range nodes {
		out[i] = n.url
	}
	return out
}

// --- clients -------------------------------------------------------------------

// conn is a client connection that counts its reconnects.
type conn struct {
	*nats.Conn
	reconnects atomic.Int64
}

// connect opens a connection to the given servers, in that order, that
// reconnects for ever and ignores servers the cluster gossips. It is
// drained and closed when the test ends.
func connect(tb testing.TB, name string, servers ...string) *conn {
	tb.Helper()
	c := &conn{}
	closed := make(chan struct{})
	nc, err := nats.Connect(strings.Join(servers, ","),
		nats.Name(name),
		nats.DontRandomize(),
		nats.IgnoreDiscoveredServers(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { c.reconnects.Add(1) }),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
	)
	if err != nil {
		tb.Fatalf("integration: connect to %v: %v", servers, err)
	}
	c.Conn = nc
	tb.Cleanup(func() {
		if err := nc.Drain(); err != nil {
			nc.Close()
			return
		}
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			nc.Close()
		}
	})
	return c
}

func newJetStream(tb testing.TB, nc *nats.Conn) jetstream.JetStream {
	tb.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// waitJetStream polls the account info until JetStream answers (on a
// cluster: a meta leader is elected).
func waitJetStream(tb testing.TB, js jetstream.JetStream, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("integration: JetStream not ready within %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitClusterReady waits for a meta leader and then for enough peers to
// place a stream with the given replica count (a probe stream, deleted
// again).
func waitClusterReady(tb testing.TB, js jetstream.JetStream, replicas int, timeout time.Duration) {
	tb.Helper()
	start := time.Now()
	waitJetStream(tb, js, timeout)
	deadline := start.Add(timeout)
	probe := jetstream.StreamConfig{Name: "QF_READY_PROBE", Subjects: []string{"qf.ready.probe"}, Replicas: replicas, Storage: jetstream.MemoryStorage}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := js.CreateStream(ctx, probe)
		if err == nil {
			err = js.DeleteStream(ctx, probe.Name)
		}
		cancel()
		if err == nil {
			tb.Logf("cluster ready for R%d after %s", replicas, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("integration: cluster not ready for R%d streams within %s: %v", replicas, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// configFiles are /nats.conf (natsConfig, an include of every other file,
// then files[""], which may use their variables) and the other files.
func configFiles(files map[string]string) []testcontainers.ContainerFile {
	conf := natsConfig
	var out []testcontainers.ContainerFile
	for _, path := range slices.Sorted(maps.Keys(files)) {
		if path == "" {
			continue
		}
		conf += "include " + strings.TrimPrefix(path, "/") + "\n"
		out = append(out, testcontainers.ContainerFile{Reader: strings.NewReader(files[path]), ContainerFilePath: path, FileMode: 0o644})
	}
	conf += files[""]
	return append(out, testcontainers.ContainerFile{Reader: strings.NewReader(conf), ContainerFilePath: natsConfigPath, FileMode: 0o644})
}
