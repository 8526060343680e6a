package control

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// refusingPairs refuses every operation with err.
type refusingPairs struct{ err error }

func (r refusingPairs) Add(string) error                            { return r.err }
func (r refusingPairs) Suspend(context.Context, string, bool) error { return r.err }
func (r refusingPairs) Resume(string) error                         { return r.err }
func (r refusingPairs) ResumeInconsistent(string) error             { return r.err }
func (r refusingPairs) Delete(string) (time.Time, error)            { return time.Time{}, r.err }

// TestAPairRefusalNamesTheVolumeOnce: the pair manager's refusals name
// the volume (and some the operation) for its own log; the command's error
// names the operation and the volume once. Before: "pair add vol1: vol1 is
// already a pair (duplex)", "pair add vol1: add vol1: refused, ...".
func TestAPairRefusalNamesTheVolumeOnce(t *testing.T) {
	for _, tc := range []struct {
		op, reason, want string
	}{
		{"add", "vol1 is already a pair (duplex)", "pair add: vol1 is already a pair (duplex)"},
		{"suspend", "vol1 is not a pair", "pair suspend: vol1 is not a pair"},
		{"resume-inconsistent", "vol1 is not a pair", "pair resume --inconsistent: vol1 is not a pair"},
		{"delete", `"vol1": no such volume in this session`, "pair delete vol1: no such volume in this session"},
		{"add", "add vol1: refused, vol1 left not a pair: the lease hung", "pair add vol1: refused, vol1 left not a pair: the lease hung"},
		{"resume", "vol10 is not a pair", "pair resume vol1: vol10 is not a pair"},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		go (&Server{Status: func() Status { return Status{} }, Pairs: refusingPairs{errors.New(tc.reason)}, Token: "t"}).Serve(ctx, ln)
		_, err = PairOp(ctx, Endpoint{Addr: ln.Addr().String()}, "t", "vol1", tc.op, false)
		cancel()
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s refused with %q: %v; want %q", tc.op, tc.reason, err, tc.want)
		}
	}
}
