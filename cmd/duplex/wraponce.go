package main

import "strings"

// contextError is an error with the context a command adds, its message
// written out once (see wrapOnce).
type contextError struct {
	msg string
	err error
}

func (e *contextError) Error() string { return e.msg }
func (e *contextError) Unwrap() error { return e.err }

// wrapOnce wraps err with what the command could not do ("cannot start
// primary"), leaving out the one-word context err's message begins with
// when what names it already ("primary: ", "promoted: " under "cannot
// promote"): the site's errors name the part they come from, which the
// command's own words name too.
func wrapOnce(what string, err error) error {
	msg := err.Error()
	if first, rest, ok := strings.Cut(msg, ": "); ok && first != "" && !strings.ContainsAny(first, " /.") {
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
// ("promote", "promoted").
func sameWord(a, b string) bool {
	return a == b || (len(a) >= 5 && len(b) >= 5 && (strings.HasPrefix(a, b) || strings.HasPrefix(b, a)))
}
