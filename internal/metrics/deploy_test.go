package metrics_test

import (
	"encoding/json"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/qualfile/qualfile/internal/metrics"
)

// exported are the metric names the consumer's /metrics serves: qualfile's
// own (every collector of metrics.Metrics, as described, so that a vector
// with no series yet counts) and the Go and process collectors the binary
// registers, with a histogram's _bucket, _sum and _count.
func exported(t *testing.T) map[string]bool {
	t.Helper()
	names := map[string]bool{}
	add := func(name string, histogram bool) {
		names[name] = true
		if histogram {
			names[name+"_bucket"], names[name+"_sum"], names[name+"_count"] = true, true, true
		}
	}
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok {
			continue
		}
		descs := make(chan *prometheus.Desc, 10)
		c.Describe(descs)
		close(descs)
		_, histogram := c.(*prometheus.HistogramVec)
		for d := range descs {
			add(fqName.FindStringSubmatch(d.String())[1], histogram)
		}
	}
	other := prometheus.NewRegistry()
	other.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	fams, err := other.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		add(f.GetName(), f.GetType() == dto.MetricType_HISTOGRAM)
	}
	return names
}

// queried are the metric names expr selects; it fails the test if expr
// does not parse.
func queried(t *testing.T, p parser.Parser, where, expr string) []string {
	t.Helper()
	e, err := p.ParseExpr(expr)
	if err != nil {
		t.Fatalf("%s: %q does not parse: %v", where, expr, err)
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out
}

// TestDeployedAlertsAndDashboard: the alert rules of deploy/prometheus
// parse with Prometheus' own rule parser, and they and every query of the
// Grafana dashboard of deploy/grafana ask only for metrics the consumer
// exports; each alert says what happened and points at the runbook.
func TestDeployedAlertsAndDashboard(t *testing.T) {
	names := exported(t)
	p := parser.NewParser(parser.Options{})
	check := func(where, expr string) {
		t.Helper()
		for _, name := range queried(t, p, where, expr) {
			if !names[name] {
				t.Errorf("%s queries %s, which the consumer does not export", where, name)
			}
		}
	}
	groups, errs := rulefmt.ParseFile("../../deploy/prometheus/qualfile-alerts.yaml", false, model.UTF8Validation, p, slog.Default())
	if len(errs) > 0 {
		t.Fatalf("the alert rules: %v", errs)
	}
	alerts := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			alerts++
			check("alert "+r.Alert, r.Expr)
			if r.Annotations["summary"] == "" || !strings.HasPrefix(r.Annotations["runbook_url"], "docs/operations.md#runbook") {
				t.Errorf("alert %s: a summary and the runbook's address, please: %v", r.Alert, r.Annotations)
			}
		}
	}
	runbook, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	section := strings.SplitN(strings.SplitN(string(runbook), "## Runbook", 2)[1], "\n## ", 2)[0]
	if rows := strings.Count(section, "\n| `"); alerts != rows {
		t.Errorf("%d alert rules for the runbook's %d alerts", alerts, rows)
	}

	data, err := os.ReadFile("../../deploy/grafana/qualfile.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &dash); err != nil {
		t.Fatalf("the dashboard: %v", err)
	}
	queries := 0
	for _, panel := range dash.Panels {
		for _, target := range panel.Targets {
			queries++
			check("panel "+panel.Title, target.Expr)
		}
	}
	if len(dash.Panels) < 10 || queries < len(dash.Panels) {
		t.Errorf("%d panels, %d queries", len(dash.Panels), queries)
	}
}
