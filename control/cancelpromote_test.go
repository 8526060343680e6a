package control

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A cancel of a promotion reaches the site's CancelPromote; at a site
// without one, a promoted site says it is promoted (whichever request did
// it: the primary asking must not serve), and any other site says nothing
// for sure (404), never that the request was refused.
func TestCancelPromote(t *testing.T) {
	post := func(s *Server, body string) (int, string) {
		req := httptest.NewRequest(http.MethodPost, "/v1/promote/cancel", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer s3cret")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	running := &Server{Status: func() Status { return Status{Session: "demo", Role: "secondary"} }, Token: "s3cret",
		CancelPromote: func(r CancelRequest) (PromoteResult, error) {
			return PromoteResult{State: PromoteRefused, Error: "cancelled " + r.ID}, nil
		}}
	if code, body := post(running, `{"session":"demo","id":"a1"}`); code != http.StatusOK || !strings.Contains(body, `"state":"refused"`) || !strings.Contains(body, "cancelled a1") {
		t.Errorf("at a running secondary: %d %s", code, body)
	}
	promoted := &Server{Status: func() Status { return Status{Session: "demo", Role: "primary", PromotedAt: "2026-12-03T00:00:00Z"} }, Token: "s3cret"}
	if code, body := post(promoted, `{"session":"demo","id":"a1"}`); code != http.StatusOK || !strings.Contains(body, `"state":"promoted"`) {
		t.Errorf("at a promoted site: %d %s", code, body)
	}
	if code, body := post(promoted, `{"session":"other","id":"a1"}`); code == http.StatusOK {
		t.Errorf("at a promoted site of another session: %d %s", code, body)
	}
	primary := &Server{Status: func() Status { return Status{Session: "demo", Role: "primary"} }, Token: "s3cret"}
	if code, body := post(primary, `{"session":"demo","id":"a1"}`); code != http.StatusNotFound || strings.Contains(body, "refused") {
		t.Errorf("at a site never promoted and not a secondary: %d %s", code, body)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/promote/cancel", strings.NewReader(`{"session":"demo","id":"a1"}`))
	rec := httptest.NewRecorder()
	running.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("a cancel without the token: %d, want 401", rec.Code)
	}
}

// FuzzCancelRequest: any body at /v1/promote/cancel is answered 200 or 400
// without a panic.
func FuzzCancelRequest(f *testing.F) {
	f.Add([]byte(`{"session":"demo","id":"00000000000000aa"}`))
	f.Add([]byte(`{"id":null}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s := &Server{Status: func() Status { return Status{} }, Token: "s3cret",
			CancelPromote: func(r CancelRequest) (PromoteResult, error) {
				return PromoteResult{State: PromoteRefused, Error: r.ID}, nil
			}}
		req := httptest.NewRequest(http.MethodPost, "/v1/promote/cancel", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer s3cret")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
