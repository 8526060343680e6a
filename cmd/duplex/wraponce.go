package main

import (
	"slices"
	"strings"
)

// contextError is an error with the context a command adds, its message
// written out once (see wrapOnce).
type contextError struct {
	msg string
	err error
}

func (e *contextError) Error() string { return e.msg }
func (e *contextError) Unwrap() error { return e.err }

// siteParts are the words the site's errors begin with to name the part
// they come from.
var siteParts = []string{"primary", "secondary", "promoted", "promote", "rejoin"}

// wrapOnce wraps err with what the command could not do ("cannot start
// primary"), leaving out the site's part that err's message begins with
// when what names it already ("primary: ", "promoted: " under "cannot
// promote"): the site's errors name the part they come from, which the
// command's own words name too. Any other word of what ("site", "start",
// "stopped") that err begins with is a name, a volume's or a
// subsystem's, and stays.
func wrapOnce(what string, err error) error {
	msg := err.Error()
	if first, rest, ok := strings.Cut(msg, ": "); ok && slices.Contains(siteParts, first) {
		for _, w := range strings.Fields(what) {
			if sameWord(w, first) {
				msg = rest
				break
			}
		}
	}
	return &contextError{msg: what + ": " + msg, err: err}
}

// sameWord reports whether a and b are one word, or one with an ending
// ("promote", "promoted"). Any other longer word is another thing (a
// volume "primary2", a session "rejoin-east"), whose name the error says
// once.
func sameWord(a, b string) bool {
	if len(a) > len(b) {
		a, b = b, a
	}
	if a == b {
		return true
	}
	if len(a) < 5 || !strings.HasPrefix(b, a) {
		return false
	}
	switch b[len(a):] {
	case "d", "ed", "s", "'s":
		return true
	}
	return false
}
