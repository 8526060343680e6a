package control

import (
	"bytes"
	"context"
	"duplex/internal/testenv"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
)

// A rejoin needs the token, reaches the promoted site's Rejoin with what
// the old primary sent, and a site that is not one, a wrong token or a
// refusal are errors with the reason in the result (asking again changes
// nothing), where an unreachable site is an error alone.
func TestRequestRejoin(t *testing.T) {
	serve := func(rejoin func(RejoinRequest) (RejoinResult, error)) Endpoint {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		s := &Server{Status: func() Status { return Status{} }, Token: "s3cret", Rejoin: rejoin}
		go s.Serve(ctx, ln)
		return Endpoint{Addr: ln.Addr().String()}
	}
	ctx := context.Background()
	req := RejoinRequest{Generation: "00000000000000aa", Volumes: map[string][]byte{"vol1": {1, 2, 3}}}
	var got RejoinRequest
	at := serve(func(r RejoinRequest) (RejoinResult, error) {
		got = r
		return RejoinResult{Resumed: []string{"vol1"}, CopyBytes: map[string]int64{"vol1": 65536}}, nil
	})
	res, err := RequestRejoin(ctx, at, "s3cret", req)
	if err != nil || !reflect.DeepEqual(got, req) || res.CopyBytes["vol1"] != 65536 {
		t.Errorf("rejoin: %+v, %v; the site got %+v, want %+v", res, err, got, req)
	}
	if res, err := RequestRejoin(ctx, at, "wrong", req); err == nil || !strings.Contains(res.Error, "token") {
		t.Errorf("rejoin with a wrong token: %+v, %v", res, err)
	}
	refusing := serve(func(RejoinRequest) (RejoinResult, error) { return RejoinResult{}, errors.New("generation differs") })
	if res, err := RequestRejoin(ctx, refusing, "s3cret", req); err == nil || res.Error != "generation differs" {
		t.Errorf("a refused rejoin: %+v, %v", res, err)
	}
	if res, err := RequestRejoin(ctx, serve(nil), "s3cret", req); err == nil || !strings.Contains(res.Error, "not a promoted site") {
		t.Errorf("rejoin at a site that is not a promoted one: %+v, %v", res, err)
	}
	gone := Endpoint{Addr: testenv.FreeAddr(t)} // reserved: nothing listens there
	if res, err := RequestRejoin(ctx, gone, "s3cret", req); err == nil || res.Error != "" {
		t.Errorf("rejoin at a site that does not answer: %+v, %v; want an error only", res, err)
	}
}

// FuzzRejoinRequest: whatever body reaches /v1/rejoin, the handler answers
// without panicking, and the site's Rejoin sees only a request that decoded.
func FuzzRejoinRequest(f *testing.F) {
	f.Add([]byte(`{"generation":"00000000000000aa","volumes":{"vol1":"AQID"}}`))
	f.Add([]byte(`{"volumes":{"vol1":null}}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s := &Server{Status: func() Status { return Status{} }, Token: "s3cret",
			Rejoin: func(r RejoinRequest) (RejoinResult, error) { return RejoinResult{Resumed: []string{r.Generation}}, nil }}
		req := httptest.NewRequest(http.MethodPost, "/v1/rejoin", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer s3cret")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
