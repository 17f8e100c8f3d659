package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/testcontainers/testcontainers-go"

	"github.com/qualfile/qualfile/internal/filingtest"
)

// Faults injected into cluster nodes: a node cut off from the routes
// network (its client port still reachable), a frozen node (docker pause).
// Each is undone by the test, and once more by a cleanup if the test ends
// before it could (a failed assertion, a timeout), so that the containers
// and networks can always be removed.

// dockerDo runs f with a Docker API client.
func dockerDo(tb testing.TB, what string, f func(ctx context.Context, cli client.APIClient) error) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := testcontainers.NewDockerProvider()
	if err != nil {
		tb.Fatalf("integration: docker provider: %v", err)
	}
	defer p.Close()
	if err := f(ctx, p.Client()); err != nil {
		tb.Fatalf("integration: %s: %v", what, err)
	}
}

// cutRoutes disconnects n from the routes network: the other nodes can no
// longer reach it nor it them, while its clients stay connected. It returns
// the function that connects it again (also run at cleanup if the test has
// not run it).
func (n *natsNode) cutRoutes(tb testing.TB) (heal func()) {
	tb.Helper()
	if n.routes == nil {
		tb.Fatalf("integration: %s is not a cluster node", n.name)
	}
	id := n.ctr.GetContainerID()
	dockerDo(tb, "disconnecting "+n.name+" from the routes network", func(ctx context.Context, cli client.APIClient) error {
		_, err := cli.NetworkDisconnect(ctx, n.routes.ID, client.NetworkDisconnectOptions{Container: id, Force: true})
		return err
	})
	var once sync.Once
	heal = func() {
		once.Do(func() {
			dockerDo(tb, "connecting "+n.name+" to the routes network again", func(ctx context.Context, cli client.APIClient) error {
				_, err := cli.NetworkConnect(ctx, n.routes.ID, client.NetworkConnectOptions{
					Container:      id,
					EndpointConfig: &network.EndpointSettings{Aliases: []string{n.name}},
				})
				return err
			})
		})
	}
	tb.Cleanup(heal)
	return heal
}

// pause freezes every process of n (docker pause): its sockets stay open
// and the kernel still accepts connections, but nothing answers. It returns
// the function that thaws it (also run at cleanup if the test has not).
func (n *natsNode) pause(tb testing.TB) (unpause func()) {
	tb.Helper()
	id := n.ctr.GetContainerID()
	dockerDo(tb, "pausing "+n.name, func(ctx context.Context, cli client.APIClient) error {
		_, err := cli.ContainerPause(ctx, id, client.ContainerPauseOptions{})
		return err
	})
	var once sync.Once
	unpause = func() {
		once.Do(func() {
			dockerDo(tb, "unpausing "+n.name, func(ctx context.Context, cli client.APIClient) error {
				_, err := cli.ContainerUnpause(ctx, id, client.ContainerUnpauseOptions{})
				return err
			})
		})
	}
	tb.Cleanup(unpause)
	return unpause
}

// monitor reads one of n's monitoring endpoints (e.g. /jsz, /routez) into
// v.
func (n *natsNode) monitor(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.monURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s on %s: %s", path, n.name, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// metaLeader is the JetStream meta leader as n sees it ("" when it knows
// none).
func (n *natsNode) metaLeader() (string, error) {
	var jsz struct {
		Meta *struct {
			Leader string `json:"leader"`
		} `json:"meta_cluster"`
	}
	if err := n.monitor("/jsz", &jsz); err != nil {
		return "", err
	}
	if jsz.Meta == nil {
		return "", nil
	}
	return jsz.Meta.Leader, nil
}

// numRoutes is the number of routes n has open.
func (n *natsNode) numRoutes() (int, error) {
	var routez struct {
		NumRoutes int `json:"num_routes"`
	}
	err := n.monitor("/routez", &routez)
	return routez.NumRoutes, err
}

// waitMetaLeader waits until every node agrees on one meta leader and
// returns it.
func waitMetaLeader(tb testing.TB, nodes []*natsNode, timeout time.Duration) *natsNode {
	tb.Helper()
	var leader *natsNode
	filingtest.WaitFor(tb, timeout, "all nodes to agree on a meta leader", func() bool {
		leader = nil
		name := ""
		for i, n := range nodes {
			l, err := n.metaLeader()
			if err != nil || l == "" || (i > 0 && l != name) {
				return false
			}
			name = l
		}
		for _, n := range nodes {
			if n.name == name {
				leader = n
			}
		}
		return leader != nil
	})
	return leader
}

// moveStreamLeader makes node the leader of the stream (a leader stepdown
// with node as the preferred successor, repeated until it holds) and waits
// until every peer is current.
func moveStreamLeader(tb testing.TB, nc *nats.Conn, js jetstream.JetStream, stream, node string) {
	tb.Helper()
	moveLeader(tb, nc, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, "stream "+stream, node, func() (*jetstream.ClusterInfo, error) {
		info, err := tryStreamInfo(js, stream)
		if err != nil {
			return nil, err
		}
		return info.Cluster, nil
	})
}

// moveConsumerLeader makes node the leader of the durable consumer.
func moveConsumerLeader(tb testing.TB, nc *nats.Conn, js jetstream.JetStream, stream, consumer, node string) {
	tb.Helper()
	moveLeader(tb, nc, "$JS.API.CONSUMER.LEADER.STEPDOWN."+stream+"."+consumer, "consumer "+consumer, node, func() (*jetstream.ClusterInfo, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := js.Consumer(ctx, stream, consumer)
		if err != nil {
			return nil, err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return nil, err
		}
		return info.Cluster, nil
	})
}

func moveLeader(tb testing.TB, nc *nats.Conn, subject, what, node string, cluster func() (*jetstream.ClusterInfo, error)) {
	tb.Helper()
	req, _ := json.Marshal(map[string]any{"placement": map[string]string{"preferred": node}})
	settled := func() (leader string, ok bool) {
		ci, err := cluster()
		if err != nil || ci == nil {
			return "", false
		}
		for _, p := range ci.Replicas {
			if !p.Current || p.Offline {
				return ci.Leader, false
			}
		}
		return ci.Leader, ci.Leader != ""
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		leader, ok := settled()
		if ok && leader == node {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("integration: %s: leader %q, want %s", what, leader, node)
		}
		if ok {
			// A refused stepdown (a peer not caught up yet) is retried.
			_, _ = nc.Request(subject, req, 5*time.Second)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
