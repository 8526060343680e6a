package control

import (
	"context"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
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
	got, err := Fetch(ctx, Endpoint{Addr: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	if got.Session != "x" || got.ConsistencyTime != "1970-01-01T00:00:00.000000001Z" || len(got.Volumes) != 1 {
		t.Fatalf("got %+v", got)
	}
	if !math.IsNaN(Lag(0, time.Now())) || Lag(time.Now().Add(-time.Second).UnixNano(), time.Now()) < 0.9 {
		t.Fatal("Lag wrong")
	}
}

type fakePairs struct{ calls []string }

func (f *fakePairs) Add(vol string) error { f.calls = append(f.calls, "add "+vol); return nil }
func (f *fakePairs) Suspend(_ context.Context, vol string, drain bool) error {
	f.calls = append(f.calls, "suspend "+vol)
	return nil
}
func (f *fakePairs) Resume(vol string) error { f.calls = append(f.calls, "resume "+vol); return nil }
func (f *fakePairs) ResumeInconsistent(vol string) error {
	f.calls = append(f.calls, "resume-inconsistent "+vol)
	return nil
}
func (f *fakePairs) Delete(vol string) (time.Time, error) {
	f.calls = append(f.calls, "delete "+vol)
	return time.Unix(0, 5), nil
}

func TestMutatingCallsNeedTheToken(t *testing.T) {
	pairs := &fakePairs{}
	fenced := 0
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := &Server{Status: func() Status { return Status{} }, Pairs: pairs, Token: "s3cret",
		Fence: func() (int64, error) { fenced++; return 1, nil }}
	go s.Serve(ctx, ln)
	addr := ln.Addr().String()

	for _, tok := range []string{"", "wrong"} {
		if _, err := PairOp(ctx, Endpoint{Addr: addr}, tok, "vol1", "suspend", false); err == nil {
			t.Errorf("pair suspend with token %q accepted", tok)
		}
		if err := FenceSecondary(ctx, Endpoint{Addr: addr}, tok); err == nil {
			t.Errorf("fence with token %q accepted", tok)
		}
	}
	if len(pairs.calls) != 0 || fenced != 0 {
		t.Fatalf("refused calls reached the site: %v, fenced %d", pairs.calls, fenced)
	}
	res, err := PairOp(ctx, Endpoint{Addr: addr}, "s3cret", "vol1", "delete", false)
	if err != nil || res.ConsistentAsOf == "" {
		t.Fatalf("delete with the token: %+v %v", res, err)
	}
	if _, err := PairOp(ctx, Endpoint{Addr: addr}, "s3cret", "vol1", "explode", false); err == nil {
		t.Fatal("unknown operation accepted")
	}
	if err := FenceSecondary(ctx, Endpoint{Addr: addr}, "s3cret"); err != nil || fenced != 1 {
		t.Fatalf("fence with the token: %v (%d)", err, fenced)
	}

	// Without a configured token, mutating calls are refused outright.
	ln2, _ := net.Listen("tcp", "127.0.0.1:0")
	go (&Server{Status: func() Status { return Status{} }, Pairs: pairs}).Serve(ctx, ln2)
	if _, err := PairOp(ctx, Endpoint{Addr: ln2.Addr().String()}, "", "vol1", "add", false); err == nil {
		t.Fatal("pair operation accepted by a site without a token")
	}
}

func TestReadTokenRefusesOpenPermissions(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/token"
	os.WriteFile(p, []byte("abc\n"), 0o644)
	if _, err := ReadToken(p); err == nil {
		t.Fatal("world-readable token accepted")
	}
	os.Chmod(p, 0o600)
	if tok, err := ReadToken(p); err != nil || tok != "abc" {
		t.Fatalf("token %q %v", tok, err)
	}
}

// TestProfilesNeedLoopbackOrToken: /debug/pprof answers a client on this
// machine that asks for a loopback host, and another host only with the
// token. A web page whose DNS name was rebound to 127.0.0.1, read by a browser
// on this machine, asks for its own name: it needs the token too.
func TestProfilesNeedLoopbackOrToken(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote string
		host   string // the request's Host header
		token  string // the server's
		auth   string // the request's Authorization header
		want   int
	}{
		{"loopback", "127.0.0.1:40000", "127.0.0.1:7401", "", "", http.StatusOK},
		{"loopback by name", "127.0.0.1:40000", "localhost:7401", "secret", "", http.StatusOK},
		{"loopback v6", "[::1]:40000", "[::1]:7401", "secret", "", http.StatusOK},
		{"loopback, rebound DNS name", "127.0.0.1:40000", "attacker.example:7401", "secret", "", http.StatusUnauthorized},
		{"loopback, rebound DNS name with token", "127.0.0.1:40000", "attacker.example:7401", "secret", "Bearer secret", http.StatusOK},
		{"remote without token", "192.0.2.9:40000", "198.51.100.1:7401", "secret", "", http.StatusUnauthorized},
		{"remote wrong token", "192.0.2.9:40000", "198.51.100.1:7401", "secret", "Bearer nope", http.StatusUnauthorized},
		{"remote with token", "192.0.2.9:40000", "198.51.100.1:7401", "secret", "Bearer secret", http.StatusOK},
		{"remote, session without token", "192.0.2.9:40000", "198.51.100.1:7401", "", "Bearer secret", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{Status: func() Status { return Status{} }, Token: tc.token}
			for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"} {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.RemoteAddr, req.Host = tc.remote, tc.host
				if tc.auth != "" {
					req.Header.Set("Authorization", tc.auth)
				}
				rec := httptest.NewRecorder()
				s.Handler().ServeHTTP(rec, req)
				if rec.Code != tc.want {
					t.Errorf("GET %s from %s: %d, want %d\n%s", path, tc.remote, rec.Code, tc.want, rec.Body)
				}
			}
		})
	}
}
