// Package integration holds qualfile's tests against real nats-server
// processes running in Docker containers (testcontainers-go).
//
// The tests build the nats-server binary pinned in go.mod on the host, wrap
// it in a FROM scratch image and start it on private Docker networks, with
// only the client and monitoring ports published, on 127.0.0.1; a cluster's
// routes run on a network of their own, so that a node can be cut off from
// the others while its clients stay connected. The pipeline (queue, filing,
// ledger, tokenkv, dispatch, the JetStream health watch) and the vendor
// sandbox run in the test process, built by internal/filingtest, the
// harness internal/filing's tests use too.
//
// The cluster fault tests cut the leading node off (TestClusterPartitionedLeader)
// and freeze the ledger's leader (TestClusterPausedLedgerLeader), and count
// per request id what was published, what the vendor saw and what results
// came out.
//
// They run with `go test ./...` whenever a Docker daemon answers and skip
// otherwise; set QUALFILE_INTEGRATION=1 to make a missing daemon a failure.
package integration
