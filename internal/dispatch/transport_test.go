package dispatch

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
)

// TestHTTPClientReusesConnections: calls made concurrency at a time, in
// rounds, open at most concurrency connections; Go's default transport
// keeps 2 idle per host and opens one for most calls.
func TestHTTPClientReusesConnections(t *testing.T) {
	const (
		concurrency = 32
		rounds      = 20
	)
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)

	hc := NewHTTPClient(concurrency)
	t.Cleanup(hc.CloseIdleConnections)
	for range rounds {
		var wg sync.WaitGroup
		for range concurrency {
			wg.Go(func() {
				resp, err := hc.Post(srv.URL, "application/json", nil)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			})
		}
		wg.Wait()
	}
	// A connection goes back to the idle pool asynchronously after its
	// body is closed, so a call of the next round may dial while one is
	// on its way back: allow that, once per connection at most. Without
	// an idle pool sized to the concurrency (Go's default keeps 2 per
	// host) every round would dial about 30 anew, some 600 in all.
	if n := opened.Load(); n > 2*concurrency {
		t.Errorf("%d calls, %d at a time, opened %d connections; want at most %d", concurrency*rounds, concurrency, n, 2*concurrency)
	}
	t.Logf("%d calls, %d at a time: %d connections", concurrency*rounds, concurrency, opened.Load())
}
