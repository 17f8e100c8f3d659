package integration

import (
	"testing"
	"time"

	"github.com/qualfile/qualfile/internal/filingtest"
	"github.com/qualfile/qualfile/internal/jshealth"
)

// Health watch timing of the test replicas: a replica whose server cannot
// serve JetStream is not ready, and moves, within about
// healthFailures × (healthInterval + healthTimeout).
const (
	healthInterval = time.Second
	healthTimeout  = time.Second
	healthFailures = 3
)

// newPipeline is one consumer replica (internal/filingtest) as the suite
// runs it on the containers: with the JetStream health watch, like the
// daemon; a consumer holding at most 64 unacknowledged messages; pull
// errors logged and a consume loop that ends on an error failing the
// test; stream reads started again for up to a minute while a cluster
// elects leaders after a fault; and its log held until the end, written
// out only when the test failed. o.NC is required.
func newPipeline(tb testing.TB, o filingtest.Options) *filingtest.Pipeline {
	tb.Helper()
	var p *filingtest.Pipeline
	o.MaxAckPending = 64
	o.Health = &jshealth.Config{Interval: healthInterval, Timeout: healthTimeout, Failures: healthFailures}
	o.ReadRetry = time.Minute
	o.OnPullError = func(err error) { tb.Logf("%s: pull: %v", p.Processor.Owner(), err) }
	o.OnLoopError = func(err error) { tb.Errorf("%s: the consume loop ended: %v", p.Processor.Owner(), err) }
	if o.Logger == nil {
		o.Logger = filingtest.HeldLogger(tb)
	}
	p = filingtest.New(tb, o)
	return p
}
