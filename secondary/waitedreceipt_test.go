package secondary

import (
	"context"
	"testing"

	"duplex/disk"
	"duplex/transport"
)

// connectReading links a primary that answers the Welcome's question with
// a Features frame saying it reads reads, and returns its end once
// welcomed again.
func (r *storageRig) connectReading(reads uint64) *link {
	r.t.Helper()
	conn, err := r.net.Dial(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { conn.Close() })
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: []string{"ss1"}, Instance: 7, Volumes: []transport.VolumeInfo{{Name: "vol1", Size: rigVolSize}}})); err != nil {
		r.t.Fatal(err)
	}
	l := &link{t: r.t, conn: conn}
	for range 2 {
		typ, body := l.recv()
		if typ != transport.TypeWelcome {
			r.t.Fatalf("frame type %d instead of a Welcome", typ)
		}
		w, err := transport.DecodePosition(body)
		if err != nil {
			r.t.Fatal(err)
		}
		if w.Features&transport.FeatureAsksPrimary == 0 {
			return l
		}
		if err := conn.Send(transport.EncodeFeatures(reads)); err != nil {
			r.t.Fatal(err)
		}
	}
	r.t.Fatal("the Welcome that answers the features asks again")
	return nil
}

// receiptsWhileGroup2Waits returns the first n receipts the secondary
// sends on l while group 2's journal fsync waits, failing the test on any
// frame that is no receipt or acknowledges group 2.
func receiptsWhileGroup2Waits(t *testing.T, l *link, n int) []transport.Position {
	t.Helper()
	var ps []transport.Position
	for len(ps) < n {
		typ, body := l.recv()
		if typ != transport.TypeAck {
			t.Fatalf("frame type %d while group 2 is journaled, want a receipt", typ)
		}
		p, err := transport.DecodePosition(body)
		if err != nil {
			t.Fatal(err)
		}
		if p.Group >= 2 {
			t.Fatalf("group %d acknowledged while its journal fsync has not returned", p.Group)
		}
		ps = append(ps, p)
	}
	return ps
}

// The receipts a receiver waiting on its disk sends say it waits, and how
// long, to a primary that reads it: it takes no record set meanwhile, and
// those sent since wait read ahead or in the link's buffers, so the
// primary must not send them again for want of progress every resend
// period of the wait, each a duplicate dropped. A primary that does not
// read the section (one of before refuses it as malformed) gets none, nor
// does the acknowledgement once the wait is over.
func TestReceiptsWhileTheDiskWaitsSayItWaits(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reads uint64
	}{
		{"reads it", transport.PrimaryReadsInconsistent | transport.PrimaryReadsWaited},
		{"of before", transport.PrimaryReadsInconsistent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := &stallJournalSync{FS: disk.OS, entered: make(chan struct{}), released: make(chan struct{})}
			r := newStorageRig(t, fsys)
			l := r.connectReading(tc.reads)
			l.send(1, 0, 1)
			if g, reason := l.journaled(1); g != 1 {
				t.Fatalf("group 1 not acknowledged: acked %d, %q", g, reason)
			}
			release := fsys.stallGroup2(t, l)
			// The receipt sent as group 2 was taken, before its journal
			// write, may come first; the receipts of the wait follow.
			ps := receiptsWhileGroup2Waits(t, l, 4)
			waited := false
			for i, p := range ps {
				if p.Waited != 0 && tc.reads&transport.PrimaryReadsWaited == 0 {
					t.Fatalf("receipt %d says a wait of %s to a primary that does not read it", i+1, p.Waited)
				}
				if p.Waited != 0 && p.Waited < firstAnswer {
					t.Fatalf("receipt %d says a wait of %s, sent %s into the wait at the least", i+1, p.Waited, firstAnswer)
				}
				waited = waited || p.Waited != 0
			}
			if tc.reads&transport.PrimaryReadsWaited != 0 && !waited {
				t.Fatalf("%d receipts while group 2's fsync waits, none saying the secondary waits: %+v; "+
					"the primary sends what it sent since again every resend period of the wait", len(ps), ps)
			}
			release()
			for {
				typ, body := l.recv()
				if typ != transport.TypeAck {
					t.Fatalf("frame type %d before group 2 was acknowledged", typ)
				}
				p, err := transport.DecodePosition(body)
				if err != nil {
					t.Fatal(err)
				}
				if p.Group >= 2 {
					if p.Waited != 0 {
						t.Fatalf("the acknowledgement of group %d says a wait of %s: the wait is over", p.Group, p.Waited)
					}
					break
				}
			}
		})
	}
}
