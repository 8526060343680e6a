package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
)

// The mutating calls (pair operations, rates, promote, drill, switchover)
// share one shape on both ends: a token-checked POST whose answer is a JSON
// result that carries its own refusal in an Error field, under a status code
// that says what kind of answer it is (404: this site does not serve the
// call; 400: the request was malformed; 409: refused). The helpers below are
// that shape once, so that each call says only what is its own.

// writeJSON answers a call with v as JSON under code.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// decodeRequest reads a call's JSON body: requests are small, and a larger
// body is an error, not a reason to buffer.
func decodeRequest(r *http.Request, v any) error {
	return json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(v)
}

// refusable is a call's result type, which carries a refusal's reason.
type refusable[R any] interface {
	*R
	setError(string)
	errorText() string
}

func (r *PromoteResult) setError(e string)    { r.Error = e }
func (r *DrillResult) setError(e string)      { r.Error = e }
func (r *SwitchoverResult) setError(e string) { r.Error = e }
func (r *Rates) setError(e string)            { r.Error = e }
func (r *PairResult) setError(e string)       { r.Error = e }
func (r *AllPairsResult) setError(e string)   { r.Error = e }

func (r *PromoteResult) errorText() string    { return r.Error }
func (r *DrillResult) errorText() string      { return r.Error }
func (r *SwitchoverResult) errorText() string { return r.Error }
func (r *Rates) errorText() string            { return r.Error }
func (r *PairResult) errorText() string       { return r.Error }
func (r *AllPairsResult) errorText() string   { return r.Error }

// serveCall serves a call whose request and result are JSON: the token
// checked (as what), 404 with absent when do is nil (the site does not run
// what serves it), 400 for a request that does not decode, 409 with the
// error in the result when do refuses, 200 with the result otherwise.
func serveCall[Req, Res any, P refusable[Res]](s *Server, w http.ResponseWriter, r *http.Request, what, absent string, do func(Req) (Res, error)) {
	if !s.authorized(w, r, what) {
		return
	}
	var res Res
	if do == nil {
		P(&res).setError(absent)
		writeJSON(w, http.StatusNotFound, res)
		return
	}
	var req Req
	if err := decodeRequest(r, &req); err != nil {
		P(&res).setError(fmt.Sprintf("%s request: %v", what, err))
		writeJSON(w, http.StatusBadRequest, res)
		return
	}
	res, err := do(req)
	if err != nil {
		P(&res).setError(err.Error())
		writeJSON(w, http.StatusConflict, res)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// post sends a call to the site at at: in as its JSON body (nil: none),
// with the control token. It decodes the answer into a Res whatever its
// status code, which it returns for the caller to judge. Every error begins
// with what; a call that did not get through before ctx ended says so,
// since the operator must then find out from the site what it did.
func post[Res any](ctx context.Context, at Endpoint, token, path, what string, in any) (Res, int, error) {
	var res Res
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return res, 0, fmt.Errorf("%s: %w", what, err)
		}
		body = bytes.NewReader(b)
	}
	// A call written whole may take effect though no answer comes in
	// time; one never written cannot.
	var written atomic.Bool
	tctx := httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(w httptrace.WroteRequestInfo) { written.Store(w.Err == nil) },
	})
	req, err := http.NewRequestWithContext(tctx, http.MethodPost, at.url(path), body)
	if err != nil {
		return res, 0, fmt.Errorf("%s: %w", what, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if at.Session != "" {
		req.Header.Set(SessionHeader, at.Session)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := at.do(req)
	var cut *cutMidCall
	if err != nil && ctx.Err() != nil && !errors.As(err, &cut) {
		took := ""
		if written.Load() {
			took = "; the call was sent, so whether it took effect is not known: duplex status says what the site holds"
		}
		return res, 0, fmt.Errorf("%s: the control address %s did not answer in time: %w%s", what, at, ctx.Err(), took)
	}
	if err != nil {
		return res, 0, fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&res); err != nil {
		var zero Res
		return zero, resp.StatusCode, fmt.Errorf("%s: %s", what, resp.Status)
	}
	return res, resp.StatusCode, nil
}

// postOK is post for a caller to whom every answer but 200 is a refusal,
// reported with the site's reason.
func postOK[Res any, P refusable[Res]](ctx context.Context, at Endpoint, token, path, what string, in any) (Res, error) {
	res, code, err := post[Res](ctx, at, token, path, what, in)
	if err == nil && code != http.StatusOK {
		err = refusal(what, P(&res).errorText())
	}
	return res, err
}

// refusal is the error of the call what that the site refused for reason.
// The site's errors name the part they come from, which may be the call's
// own name ("drill: no drill runs", "switchover abandoned, ..."): said
// once, not twice.
func refusal(what, reason string) error {
	if strings.HasPrefix(reason, what+": ") || strings.HasPrefix(reason, what+" ") {
		return errors.New(reason)
	}
	return fmt.Errorf("%s: %s", what, reason)
}
