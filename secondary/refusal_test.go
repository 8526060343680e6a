package secondary

import "duplex/transport"

// refusalReason is the reason of a Refuse body, for the tests that look
// only at the words.
func refusalReason(body []byte) (string, error) {
	r, err := transport.DecodeRefuse(body)
	return r.Reason, err
}
