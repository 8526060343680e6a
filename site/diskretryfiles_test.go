package site

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/internal/testpki"
	"duplex/tlsconf"
)

// TestADamagedTokenAtAReopenIsRetriedSayingWhatToDo: a control token file
// emptied while a secondary retries after a disk fault is the operator's
// (the secondary never writes it, and another program may be replacing
// it): the attempts go on, each logged naming the file and what to do,
// and once a good token is back the secondary opens again.
func TestADamagedTokenAtAReopenIsRetriedSayingWhatToDo(t *testing.T) {
	r := retryingForGood(t, 50*time.Millisecond)
	tp := r.cfg.TokenPath()
	good, err := os.ReadFile(tp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tp, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r.in.Clear()
	waitFor(t, 30*time.Second, "attempts that name the token file and what to do", func() bool {
		return len(r.logs.lines("opening again after a disk fault failed", tp, "fix=", "replace")) >= 2
	})
	select {
	case err := <-r.ended:
		t.Fatalf("RunSecondary ended: %v, want the attempts to go on while the token file is empty", err)
	default:
	}
	if err := os.WriteFile(tp, good, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the secondary open again once the token is back", func() bool {
		return len(r.logs.lines("opened again after a disk fault")) > 0
	})
}

// TestWhatToDoOfAnOperatorsFileAtAReopen: an attempt to open a secondary
// again that fails on a TLS certificate, key or CA file, or a control
// token file, that is damaged (the operator's files, which the secondary
// never writes) is tried again, and its log says to replace the file it
// names; other failures say nothing of it.
func TestWhatToDoOfAnOperatorsFileAtAReopen(t *testing.T) {
	dir := testpki.SitesDir(t)
	cfg, err := config.Parse([]byte(testpki.SitesConfig), dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsconf.SecondaryLink(cfg); err != nil {
		t.Fatal(err)
	}
	var errs []error
	for _, file := range []string{cfg.Secondary.TLSCert, cfg.Secondary.TLSKey, cfg.Secondary.TLSCA} {
		path := cfg.Resolve(file)
		good, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range [][]byte{nil, good[:len(good)/2], []byte("\x00\x00\x00\x00")} {
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := tlsconf.SecondaryLink(cfg)
			if err == nil {
				t.Fatalf("%s holding %q accepted", path, bad)
			}
			errs = append(errs, fmt.Errorf("secondary: %w", err))
		}
		if err := os.WriteFile(path, good, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tp := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tp, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = control.ReadToken(tp)
	if err == nil {
		t.Fatal("an empty token accepted")
	}
	errs = append(errs, fmt.Errorf("secondary: %w", err))
	for _, err := range errs {
		if lasting(err) != "" {
			t.Errorf("%v: no retry, want the attempts to go on", err)
		}
		if fix := operatorsFile(err); !strings.Contains(fix, "replace") {
			t.Errorf("%v: fix %q, want it to say to replace the named file", err, fix)
		}
	}
	if fix := operatorsFile(fmt.Errorf("journal x: %w", os.ErrPermission)); fix != "" {
		t.Errorf("a journal's error: fix %q, want none", fix)
	}
}
