package control

import (
	"context"
	"crypto/tls"
	"errors"
	"testing"
	"time"

	"duplex/internal/testenv"
)

// TestACallToAnNBDPortSaysSoEveryTime: an NBD server greets a connection
// before anything is sent on it. However soon its greeting comes, a call
// sent there fails saying it is an NBD export address, not a control
// address. Before, a greeting that came before the request was written
// made the HTTP client drop the connection ("readLoopPeekFailLocked:
// <nil>") and log "Unsolicited response received on idle HTTP channel"
// on stderr, now and then on a loaded machine.
func TestACallToAnNBDPortSaysSoEveryTime(t *testing.T) {
	at := Endpoint{Addr: testenv.NBDGreeter(t)}
	for i := 0; i < 300; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := Fetch(ctx, at)
		cancel()
		if !errors.Is(err, ErrNBDAddress) {
			t.Fatalf("call %d to an NBD port: %v; want ErrNBDAddress", i, err)
		}
	}
	// Over HTTPS, the greeting comes where the server's TLS record would.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Fetch(ctx, Endpoint{Addr: at.Addr, TLS: &tls.Config{}}); !errors.Is(err, ErrNBDAddress) {
		t.Errorf("a call over HTTPS to an NBD port: %v; want ErrNBDAddress", err)
	}
}
