// Package integration holds qualfile's tests against real nats-server
// processes running in Docker containers (testcontainers-go).
//
// The tests build the nats-server binary pinned in go.mod on the host, wrap
// it in a FROM scratch image and start it on a private Docker network, with
// only the client port published, on 127.0.0.1. The pipeline (queue, filing,
// ledger, tokenkv, dispatch) and the vendor sandbox run in the test process.
//
// They run with `go test ./...` whenever a Docker daemon answers and skip
// otherwise; set QUALFILE_INTEGRATION=1 to make a missing daemon a failure.
package integration
