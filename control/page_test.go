package control

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, h http.Handler, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest("GET", path, nil)
	r.RemoteAddr = "192.0.2.7:5000" // another host: the page must not rely on the loopback
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestStatusPageServesItsEmbeddedFiles(t *testing.T) {
	h := (&Server{Status: func() Status { return Status{Session: "s"} }, Token: "s3cret"}).Handler()
	cases := []struct {
		path, file, contentType string
	}{
		{"/", "page/index.html", "text/html; charset=utf-8"},
		{"/page/status.js", "page/status.js", "text/javascript; charset=utf-8"},
		{"/page/status.css", "page/status.css", "text/css; charset=utf-8"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			w := get(t, h, c.path)
			if w.Code != http.StatusOK {
				t.Fatalf("GET %s: %d", c.path, w.Code)
			}
			if got := w.Header().Get("Content-Type"); got != c.contentType {
				t.Errorf("Content-Type %q, want %q", got, c.contentType)
			}
			want, err := pageFiles.ReadFile(c.file)
			if err != nil {
				t.Fatal(err)
			}
			if w.Body.String() != string(want) {
				t.Errorf("GET %s is not the embedded %s", c.path, c.file)
			}
			csp := w.Header().Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
				if !strings.Contains(csp, d) {
					t.Errorf("Content-Security-Policy %q lacks %q", csp, d)
				}
			}
			if w.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Error("no X-Content-Type-Options: nosniff")
			}
		})
	}
	index, _ := pageFiles.ReadFile("page/index.html")
	for _, ref := range []string{`src="page/status.js"`, `href="page/status.css"`} {
		if !strings.Contains(string(index), ref) {
			t.Errorf("index.html does not load %s", ref)
		}
	}
	// Nothing from elsewhere: the page works without external network.
	for _, f := range []string{"page/index.html", "page/status.js", "page/status.css"} {
		b, _ := pageFiles.ReadFile(f)
		if strings.Contains(string(b), "https://") || strings.Contains(string(b), "http://cdn") {
			t.Errorf("%s refers to another server", f)
		}
	}
	for _, path := range []string{"/page/missing.js", "/status", "/index.html/x"} {
		if w := get(t, h, path); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, w.Code)
		}
	}
	r := httptest.NewRequest("POST", "/", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", w.Code)
	}
}

func TestHistoryKeepsTheLastSamplesInOrder(t *testing.T) {
	var h History
	if got := h.Since(0); len(got) != 0 {
		t.Fatalf("empty history has %d samples", len(got))
	}
	for i := range HistoryLength + 100 {
		h.Add(HistorySample{UnixMilli: int64(1000 + i), BytesReplicated: uint64(i)})
	}
	all := h.Since(0)
	if len(all) != HistoryLength {
		t.Fatalf("%d samples kept, want %d", len(all), HistoryLength)
	}
	for i, s := range all {
		if want := int64(1100 + i); s.UnixMilli != want {
			t.Fatalf("sample %d at %d, want %d", i, s.UnixMilli, want)
		}
	}
	if got := h.Since(int64(1000 + HistoryLength + 97)); len(got) != 2 || got[0].BytesReplicated != HistoryLength+98 {
		t.Fatalf("Since the third newest: %+v", got)
	}
}

func TestHistoryEndpoint(t *testing.T) {
	hist := &History{}
	for i := range 5 {
		s := HistorySample{UnixMilli: int64(1000 * (i + 1)), SidefileBytes: int64(i) << 20, BytesReplicated: uint64(i) << 30}
		if i > 0 { // the first sample has no consistency time yet
			s.LagSeconds = LagSample(time.Now().Add(-time.Duration(i)*20*time.Millisecond).UnixNano(), time.Now())
		}
		hist.Add(s)
	}
	h := (&Server{Status: func() Status { return Status{} }, History: hist, Token: "s3cret"}).Handler()

	w := get(t, h, "/v1/history")
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/history: %d %q", w.Code, w.Header().Get("Content-Type"))
	}
	// The shape the page reads, field by field.
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"interval_seconds", "capacity", "samples"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("no %q in %s", k, w.Body)
		}
	}
	var samples []map[string]any
	json.Unmarshal(raw["samples"], &samples)
	if len(samples) != 5 {
		t.Fatalf("%d samples, want 5", len(samples))
	}
	if s := samples[4]; s["t"] != 5000.0 || s["sidefile_bytes"] != float64(4<<20) || s["bytes_replicated"] != float64(4<<30) {
		t.Errorf("last sample %v", s)
	}
	if lag, ok := samples[4]["lag_seconds"].(float64); !ok || lag < 0.08 || lag > 60 {
		t.Errorf("last sample's lag %v, want about 0.08 s", samples[4]["lag_seconds"])
	}
	for _, k := range []string{"sidefile_bytes", "lag_seconds"} {
		if _, ok := samples[0][k]; ok {
			t.Errorf("first sample has %s: an empty sidefile (as at the secondary) and no consistency time yet are left out: %v", k, samples[0])
		}
	}
	var res HistoryResponse
	json.Unmarshal(w.Body.Bytes(), &res)
	if res.IntervalSeconds != 1 || res.Capacity != HistoryLength {
		t.Errorf("interval %v capacity %d", res.IntervalSeconds, res.Capacity)
	}

	// A poll passes the time of the newest sample it holds.
	w = get(t, h, "/v1/history?since=3000")
	json.Unmarshal(w.Body.Bytes(), &res)
	if len(res.Samples) != 2 || res.Samples[0].UnixMilli != 4000 {
		t.Errorf("since=3000: %+v", res.Samples)
	}
	w = get(t, h, "/v1/history?since=5000")
	if !strings.Contains(w.Body.String(), `"samples":[]`) {
		t.Errorf("nothing new is an empty list, not null: %s", w.Body)
	}
	if w := get(t, h, "/v1/history?since=yesterday"); w.Code != http.StatusBadRequest {
		t.Errorf("since=yesterday: %d, want 400", w.Code)
	}

	// Without a history (a server that keeps none) there is no endpoint.
	if w := get(t, (&Server{Status: func() Status { return Status{} }}).Handler(), "/v1/history"); w.Code != http.StatusNotFound {
		t.Errorf("no history: %d, want 404", w.Code)
	}
}

func TestSitesEndpoint(t *testing.T) {
	sites := []Site{{Role: "primary", Control: "127.0.0.1:7401", NBD: "127.0.0.1:10809"},
		{Role: "secondary", Control: "127.0.0.1:7403", Listen: "127.0.0.1:7402"}}
	w := get(t, (&Server{Status: func() Status { return Status{} }, Sites: sites}).Handler(), "/v1/sites")
	var got []Site
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || len(got) != 2 || got[1] != sites[1] {
		t.Fatalf("sites %s: %v", w.Body, err)
	}
	w = get(t, (&Server{Status: func() Status { return Status{} }}).Handler(), "/v1/sites")
	if strings.TrimSpace(w.Body.String()) != "[]" {
		t.Errorf("no sites: %s", w.Body)
	}
}

// TestStatusPageNeedsNoToken: with a control token configured, everything
// the page reads answers without it, nothing it reads carries it, and what
// needs the token still refuses a caller without it.
func TestStatusPageNeedsNoToken(t *testing.T) {
	const token = "s3cret-token-value"
	hist := &History{}
	hist.Add(HistorySample{UnixMilli: 1, LagSeconds: LagSample(1, time.Now())})
	s := &Server{Status: func() Status { return Status{Session: "s", Role: "secondary"} }, History: hist, Token: token,
		Sites: []Site{{Role: "secondary", Control: "127.0.0.1:7403"}}, Fence: func() (int64, error) { return 1, nil }}
	h := s.Handler()
	for _, path := range []string{"/", "/page/status.js", "/page/status.css", "/v1/status", "/v1/history", "/v1/sites"} {
		w := get(t, h, path)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s without the token: %d", path, w.Code)
		}
		body, _ := io.ReadAll(w.Body)
		if strings.Contains(string(body), token) {
			t.Errorf("GET %s shows the token", path)
		}
	}
	js, _ := pageFiles.ReadFile("page/status.js")
	for _, s := range []string{"Authorization", "localStorage", "method: \"POST\""} {
		if strings.Contains(string(js), s) {
			t.Errorf("the page's script uses %s: it reads, and needs no token", s)
		}
	}
	r := httptest.NewRequest("POST", "/v1/fence", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusUnauthorized {
		t.Errorf("fence without the token: %d, want 401", w.Code)
	}
	if w := get(t, h, "/debug/pprof/heap"); w.Code != http.StatusUnauthorized {
		t.Errorf("a profile for another host without the token: %d, want 401", w.Code)
	}
}
