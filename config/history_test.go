package config

import (
	"strings"
	"testing"
	"time"
)

// TestHistory: [secondary] history is off when left out, history_bytes
// defaults once history is set, and each is checked with its key's path.
func TestHistory(t *testing.T) {
	base := minimal + "[secondary]\nlisten = \"127.0.0.1:7402\"\njournal = \"j\"\n%s[[secondary.volume]]\nname = \"v\"\npath = \"w.img\"\n"
	with := func(add string) string { return strings.Replace(base, "%s", add, 1) }
	c, err := Parse([]byte(with("")), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Secondary.History != 0 || c.Secondary.HistoryBytes != 0 {
		t.Errorf("left out: history %v, history_bytes %v; want off", c.Secondary.History, c.Secondary.HistoryBytes)
	}
	c, err = Parse([]byte(with("history = \"24h\"\n")), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Secondary.History != Duration(24*time.Hour) || c.Secondary.HistoryBytes != DefaultHistoryBytes {
		t.Errorf("history = 24h: %v, %v; want 24h, %v", c.Secondary.History, c.Secondary.HistoryBytes, DefaultHistoryBytes)
	}
	c, err = Parse([]byte(with("history = \"15m\"\nhistory_bytes = \"20GiB\"\n")), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Secondary.History != Duration(15*time.Minute) || c.Secondary.HistoryBytes != 20*GiB {
		t.Errorf("explicit: %v, %v", c.Secondary.History, c.Secondary.HistoryBytes)
	}
	back, text := reparse(t, c, "")
	if back.Secondary.History != c.Secondary.History || back.Secondary.HistoryBytes != c.Secondary.HistoryBytes {
		t.Errorf("encoded and parsed back: %v, %v\n%s", back.Secondary.History, back.Secondary.HistoryBytes, text)
	}
	for _, tc := range []struct{ add, field, want string }{
		{"history = \"-1h\"\n", "secondary.history", ""},
		{"history = \"9000h\"\n", "secondary.history", "from 0s (no history) to 8760h"},
		{"history = 24\n", "secondary.history", "no unit"},
		{"history = \"1h\"\nhistory_bytes = \"1MiB\"\n", "secondary.history_bytes", "at least 4MiB"},
		{"history = \"1h\"\nhistory_bytes = \"0\"\n", "secondary.history_bytes", "0 is too small"},
		{"history_bytes = \"1GiB\"\n", "secondary.history_bytes", "set without history"},
		{"histroy = \"1h\"\n", "secondary.histroy", `did you mean "history"`},
	} {
		_, err := Parse([]byte(with(tc.add)), "")
		if err == nil || !strings.Contains(err.Error(), tc.field+":") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %s: ... %s", tc.add, err, tc.field, tc.want)
		}
	}
}
