package main

import (
	"encoding/json"
	"strings"
	"testing"

	"duplex/control"
)

// The primary's status says what the link compresses with and the ratio so
// far, in words and in JSON.
func TestStatusShowsCompression(t *testing.T) {
	ratio := 3.5
	addr := serveStatus(t, control.Status{Session: "s", Role: "primary", Link: "connected", Compression: "zstd", CompressionRatio: &ratio})
	code, out, errs := runCmd("status", "--addr", addr)
	if code != exitOK || !strings.Contains(out, "compression:zstd ratio:3.50") {
		t.Fatalf("exit %d, stderr %q; human status lacks the compression:\n%s", code, errs, out)
	}
	code, out, _ = runCmd("status", "--addr", addr, "--json")
	var got struct {
		Compression      string   `json:"compression"`
		CompressionRatio *float64 `json:"compression_ratio"`
	}
	if code != exitOK || json.Unmarshal([]byte(out), &got) != nil {
		t.Fatalf("exit %d, json %q", code, out)
	}
	if got.Compression != "zstd" || got.CompressionRatio == nil || *got.CompressionRatio != 3.5 {
		t.Fatalf("status JSON compression %q, ratio %v", got.Compression, got.CompressionRatio)
	}
}
