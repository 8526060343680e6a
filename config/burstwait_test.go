package config

import (
	"strings"
	"testing"
	"time"
)

// TestBurstWait: [primary] burst_wait is 1s left out, a duration up to 10s,
// and "off", a bare 0 or "0s" for never; anything else is refused with the
// key's path and what it takes; "off" survives Encode.
func TestBurstWait(t *testing.T) {
	withPrimary := func(add string) string {
		return strings.Replace(minimal, "[primary]\n", "[primary]\n"+add+"\n", 1)
	}
	for _, tc := range []struct {
		add  string
		want time.Duration
	}{
		{"", time.Second},
		{`burst_wait = "250ms"`, 250 * time.Millisecond},
		{`burst_wait = "10s"`, 10 * time.Second},
		{`burst_wait = "off"`, 0},
		{`burst_wait = 0`, 0},
		{`burst_wait = "0"`, 0},
		{`burst_wait = "0s"`, 0},
	} {
		c, err := Parse([]byte(withPrimary(tc.add)), "")
		if err != nil {
			t.Errorf("%q: %v", tc.add, err)
			continue
		}
		if got := time.Duration(c.Primary.BurstWait); got != tc.want {
			t.Errorf("%q: burst_wait %v, want %v", tc.add, got, tc.want)
		}
		text, err := c.Encode()
		if err != nil {
			t.Fatal(err)
		}
		back, err := Parse(text, "")
		if err != nil || back.Primary.BurstWait != c.Primary.BurstWait {
			t.Errorf("%q: encoded and parsed back: %v, %v\n%s", tc.add, back, err, text)
		}
	}
	for _, tc := range []struct{ add, want string }{
		{`burst_wait = "-1s"`, `-1s: must be from 0s ("off": never wait) to 10s`},
		{`burst_wait = "11s"`, `11s: must be from 0s ("off": never wait) to 10s`},
		{`burst_wait = "1h"`, "longer would hold that much unsent"},
		{`burst_wait = "soon"`, `"soon": not a duration`},
		{`burst_wait = 1`, "has no unit"},
		{`burst_wait = "1"`, "has no unit"},
		{`burst_wait = true`, "must be a duration"},
		{`burst_wait = "Off"`, `not a duration: write e.g. "20ms", "60s" or "2m"; or "off"`},
	} {
		_, err := Parse([]byte(withPrimary(tc.add)), "")
		if err == nil || !strings.Contains(err.Error(), "primary.burst_wait: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want primary.burst_wait: ... %s", tc.add, err, tc.want)
		}
	}
	// An interval or a history knows no "off".
	if _, err := Parse([]byte(strings.Replace(minimal, "[primary]\n", "interval = \"off\"\n[primary]\n", 1)), ""); err == nil || !strings.Contains(err.Error(), "interval: ") {
		t.Errorf(`interval = "off": err = %v`, err)
	}
}
