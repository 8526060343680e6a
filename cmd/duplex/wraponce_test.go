package main

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// TestWrapOnceNamesTheContextOnce: the command's words and the site's
// context say one thing once; a site's context that names something else
// (a config key, another part) stays, and the error is still the site's.
func TestWrapOnceNamesTheContextOnce(t *testing.T) {
	cases := []struct{ what, err, want string }{
		{"cannot start primary", "primary: pair-state directory x is in use", "cannot start primary: pair-state directory x is in use"},
		{"cannot promote", "promoted: [secondary] has no nbd address", "cannot promote: [secondary] has no nbd address"},
		{"cannot rejoin", "rejoin: the promoted site's data generation", "cannot rejoin: the promoted site's data generation"},
		{"cannot start secondary", "secondary.listen: 0.0.0.0:0 is not a loopback address", "cannot start secondary: secondary.listen: 0.0.0.0:0 is not a loopback address"},
		{"secondary stopped", "apply: group 7: short write", "secondary stopped: apply: group 7: short write"},
		{"primary stopped", "primary stopped early", "primary stopped: primary stopped early"},
	}
	for _, c := range cases {
		if got := wrapOnce(c.what, errors.New(c.err)).Error(); got != c.want {
			t.Errorf("wrapOnce(%q, %q) = %q, want %q", c.what, c.err, got, c.want)
		}
	}
	// A context that only begins with the command's word is another
	// thing, said once: a name such as a volume's, or a config key's.
	for _, c := range []struct{ what, err string }{
		{"cannot start primary", "primary2: short write"},
		{"cannot start secondary", "secondary_db: short write"},
		{"cannot rejoin", "rejoin-east: no such volume"},
		{"secondary stopped", "stoppedvol: short write"},
	} {
		if got, want := wrapOnce(c.what, errors.New(c.err)).Error(), c.what+": "+c.err; got != want {
			t.Errorf("wrapOnce(%q, %q) = %q, want %q", c.what, c.err, got, want)
		}
	}
	inner := fmt.Errorf("primary: %w", fs.ErrNotExist)
	if err := wrapOnce("cannot start primary", inner); !errors.Is(err, fs.ErrNotExist) || !errors.Is(err, inner) {
		t.Errorf("wrapOnce lost the error it wraps: %v", err)
	}
}

// TestWrapOnceKeepsANameThatIsAWordOfTheCommand: only the site's parts
// (primary, secondary, promoted, rejoin) are the context the command's
// words name already; a one-word name that is another word of them (a
// volume or subsystem named "site", "start", "stopped") is the thing the
// error is about, and stays. Before, it was dropped as the command's own
// context: "promoted site stopped: site: short write" read "promoted site
// stopped: short write", the volume unnamed.
func TestWrapOnceKeepsANameThatIsAWordOfTheCommand(t *testing.T) {
	for _, c := range []struct{ what, err string }{
		{"promoted site stopped", "site: short write"},
		{"promoted site stopped", "stopped: short write"},
		{"cannot serve the promoted site", "site: short write"},
		{"cannot start primary", "start: short write"},
		{"cannot start primary", "cannot: short write"},
		{"cannot serve as the primary again", "again: short write"},
		{"cannot start as the promoted site's secondary", "site: no such volume"},
	} {
		if got, want := wrapOnce(c.what, errors.New(c.err)).Error(), c.what+": "+c.err; got != want {
			t.Errorf("wrapOnce(%q, %q) = %q, want %q", c.what, c.err, got, want)
		}
	}
	// The site's own context is still said once, also under a command
	// that names it with an ending.
	for _, c := range []struct{ what, err, want string }{
		{"cannot promote", "promote: refused", "cannot promote: refused"},
		{"cannot start as the promoted site's secondary", "secondary: refused", "cannot start as the promoted site's secondary: refused"},
		{"promoted site stopped", "promoted: short write", "promoted site stopped: short write"},
	} {
		if got := wrapOnce(c.what, errors.New(c.err)).Error(); got != c.want {
			t.Errorf("wrapOnce(%q, %q) = %q, want %q", c.what, c.err, got, c.want)
		}
	}
}
