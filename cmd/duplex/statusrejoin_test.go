package main

import (
	"bytes"
	"strings"
	"testing"

	"duplex/control"
)

// Each site says which site is primary now and since when: the promoted
// site that it is, the old primary that rejoined it that the other is.
func TestStatusSaysWhichSiteIsPrimarySinceWhen(t *testing.T) {
	const at, from = "2026-12-02T22:00:00Z", "2026-12-02T21:59:59Z"
	for _, tc := range []struct {
		role, want, not string
	}{
		{"primary", "primary-since:" + at, "rejoined"},
		{"secondary", "rejoined: the other site is primary since " + at, "primary-since"},
	} {
		var b bytes.Buffer
		printStatus(&b, control.Status{Session: "s", Role: tc.role, Link: "connected", PromotedAt: at, PromotedFrom: from})
		if got := b.String(); !strings.Contains(got, tc.want) || strings.Contains(got, tc.not) || !strings.Contains(got, from) {
			t.Errorf("status of the %s:\n%s\nwant %q and %s, not %q", tc.role, got, tc.want, from, tc.not)
		}
	}
}
