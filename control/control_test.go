package control

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestMetricsParseWithPrometheusTextParser(t *testing.T) {
	m := NewMetrics("s1", "secondary", func() []Sample {
		return []Sample{
			Gauge("lag_seconds", "lag", 0.02),
			Counter("groups_applied_total", "groups", 42),
			Counter("crc_errors_total", "crc", 1),
		}
	})
	m.ObserveLag(0.01)
	m.ObserveLag(0.3)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &Server{Status: func() Status { return Status{Session: "s1"} }, Metrics: m.Handler()}
	go s.Serve(ctx, ln)

	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("exposition does not parse: %v\n%s", err, body)
	}
	for _, name := range []string{"duplex_lag_seconds", "duplex_groups_applied_total", "duplex_crc_errors_total", "duplex_lag_distribution_seconds"} {
		f, ok := families[name]
		if !ok {
			t.Errorf("metric %s missing", name)
			continue
		}
		labels := map[string]string{}
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["session"] != "s1" || labels["role"] != "secondary" {
			t.Errorf("%s labels %v", name, labels)
		}
	}
	if got := families["duplex_groups_applied_total"].GetMetric()[0].GetCounter().GetValue(); got != 42 {
		t.Errorf("groups_applied_total = %v, want 42", got)
	}
	if got := families["duplex_lag_distribution_seconds"].GetMetric()[0].GetHistogram().GetSampleCount(); got != 2 {
		t.Errorf("lag histogram count %d, want 2", got)
	}
}

func TestFetchStatus(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	want := Status{Session: "x", Role: "primary", Link: "connected", ConsistencyTime: FormatTime(1), Volumes: []VolumeStatus{{Name: "v"}}}
	go (&Server{Status: func() Status { return want }}).Serve(ctx, ln)
	got, err := Fetch(ctx, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got.Session != "x" || got.ConsistencyTime != "1970-01-01T00:00:00.000000001Z" || len(got.Volumes) != 1 {
		t.Fatalf("got %+v", got)
	}
	if Lag(0, time.Now()) != 0 || Lag(time.Now().Add(-time.Second).UnixNano(), time.Now()) < 0.9 {
		t.Fatal("Lag wrong")
	}
}
