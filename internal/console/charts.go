package console

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/qualfile/qualfile/internal/readmodel"
	"github.com/qualfile/qualfile/messages"
)

// The overview's charts are SVG drawn on the server: bars of 48 hours.
const (
	chartHours  = 48
	chartWidth  = 960
	chartHeight = 160
	barWidth    = chartWidth / chartHours
)

// Chart is one SVG chart: stacked bars, or lines.
type Chart struct {
	Title  string // a label key
	Max    float64
	Unit   string
	Bars   []Bar
	Lines  []Line
	Legend []string // class names, in order
	Ticks  []Tick
}

// Bar is one hour's stack.
type Bar struct {
	X        int
	Segments []Segment
}

// Segment is one part of a bar.
type Segment struct {
	Y, H  float64
	Class string
	Title string
}

// Line is one series of points, drawn as a line through dots.
type Line struct {
	Class  string
	Points string
	Dots   []Dot
}

// Dot is one point of a line, with what it says.
type Dot struct {
	X, Y  float64
	Title string
}

// Tick labels an hour on the x axis.
type Tick struct {
	X    int
	Time time.Time
}

func charts(hours []readmodel.Hour, now time.Time) []Chart {
	start := now.UTC().Truncate(time.Hour).Add(-(chartHours - 1) * time.Hour)
	byHour := map[int]readmodel.Hour{}
	for _, h := range hours {
		if i := int(h.Start.Sub(start) / time.Hour); i >= 0 && i < chartHours {
			byHour[i] = h
		}
	}
	var ticks []Tick
	for i := 0; i < chartHours; i += 6 {
		ticks = append(ticks, Tick{X: i * barWidth, Time: start.Add(time.Duration(i) * time.Hour)})
	}
	stacked := func(title string, classes []string, value func(h readmodel.Hour, class string) float64) Chart {
		c := Chart{Title: title, Legend: classes, Ticks: ticks}
		for i := range chartHours {
			sum := 0.0
			for _, cl := range classes {
				sum += value(byHour[i], cl)
			}
			c.Max = max(c.Max, sum)
		}
		if c.Max == 0 {
			c.Max = 1
		}
		for i := range chartHours {
			b := Bar{X: i * barWidth}
			y := float64(chartHeight)
			for _, cl := range classes {
				v := value(byHour[i], cl)
				if v == 0 {
					continue
				}
				hgt := v / c.Max * chartHeight
				y -= hgt
				at := start.Add(time.Duration(i) * time.Hour)
				b.Segments = append(b.Segments, Segment{Y: y, H: hgt, Class: cssClass(cl), Title: fmt.Sprintf("%s UTC · %s: %g", at.Format("01-02 15:00"), cl, v)})
			}
			c.Bars = append(c.Bars, b)
		}
		return c
	}
	byStatus := stacked("chart_filings_status", readmodel.Statuses, func(h readmodel.Hour, status string) float64 {
		n := 0
		for _, st := range h.Filings {
			n += st[status]
		}
		return float64(n)
	})
	apis := make([]string, 0, len(messages.APIs()))
	for _, a := range messages.APIs() {
		apis = append(apis, string(a))
	}
	byAPI := stacked("chart_filings_api", apis, func(h readmodel.Hour, api string) float64 {
		n := 0
		for _, v := range h.Filings[api] {
			n += v
		}
		return float64(n)
	})
	holds := stacked("chart_retries", []string{readmodel.EventRetry, messages.EventDeferred}, func(h readmodel.Hour, event string) float64 {
		n := 0
		for api, evs := range h.Events {
			if !strings.HasPrefix(api, "breaker.") {
				n += evs[event]
			}
		}
		return float64(n)
	})
	latency := Chart{Title: "chart_latency", Unit: "ms", Legend: apis, Ticks: ticks}
	for _, h := range hours {
		for _, v := range h.MeanMS {
			latency.Max = max(latency.Max, v)
		}
	}
	if latency.Max == 0 {
		latency.Max = 1
	}
	for _, api := range apis {
		line := Line{Class: cssClass(api)}
		var pts []string
		for i := range chartHours {
			if v, ok := byHour[i].MeanMS[api]; ok {
				d := Dot{X: float64(i*barWidth + barWidth/2), Y: chartHeight - v/latency.Max*chartHeight,
					Title: fmt.Sprintf("%s UTC · %s: %.1f ms", start.Add(time.Duration(i)*time.Hour).Format("01-02 15:00"), api, v)}
				line.Dots = append(line.Dots, d)
				pts = append(pts, fmt.Sprintf("%.0f,%.1f", d.X, d.Y))
			}
		}
		if len(pts) > 0 {
			line.Points = strings.Join(pts, " ")
			latency.Lines = append(latency.Lines, line)
		}
	}
	return []Chart{byStatus, byAPI, latency, holds}
}

// APITotal is one api's figures over the overview's hours.
type APITotal struct {
	API      string
	Filings  map[string]int
	Attempts int
	Retries  int
	Holds    int
	MeanMS   float64
	MaxMS    float64
}

// totals sums the hours by api; the breakers' events by vendor.
func totals(hours []readmodel.Hour) map[string]any {
	byAPI := map[string]*APITotal{}
	breakers := map[string]map[string]int{}
	get := func(api string) *APITotal {
		t := byAPI[api]
		if t == nil {
			t = &APITotal{API: api, Filings: map[string]int{}}
			byAPI[api] = t
		}
		return t
	}
	for _, h := range hours {
		for api, st := range h.Filings {
			for k, v := range st {
				get(api).Filings[k] += v
			}
		}
		for api, evs := range h.Events {
			if strings.HasPrefix(api, "breaker.") {
				if breakers[api] == nil {
					breakers[api] = map[string]int{}
				}
				for k, v := range evs {
					breakers[api][k] += v
				}
				continue
			}
			t := get(api)
			sum := t.MeanMS * float64(t.Attempts)
			t.Attempts += evs[messages.EventAttempt]
			t.Retries += evs[readmodel.EventRetry]
			t.Holds += evs[messages.EventDeferred]
			if n := evs[messages.EventAttempt]; n > 0 && t.Attempts > 0 {
				t.MeanMS = (sum + h.MeanMS[api]*float64(n)) / float64(t.Attempts)
				t.MaxMS = max(t.MaxMS, h.MaxMS[api])
			}
		}
	}
	var list []*APITotal
	for _, k := range slices.Sorted(maps.Keys(byAPI)) {
		list = append(list, byAPI[k])
	}
	return map[string]any{"APIs": list, "Breakers": breakers}
}

// cssClass makes a status or an api a class name.
func cssClass(s string) string { return "c-" + strings.NewReplacer(".", "-", "_", "-").Replace(s) }

// spanContext is the trace id of ctx's span context.
func spanContext(ctx context.Context) string {
	return trace.SpanContextFromContext(ctx).TraceID().String()
}
