package mover

import (
	"context"
	"testing"

	"duplex/recordset"
)

// TestHeldOnlyLooksAtEveryUpdateHeld: HeldOnly answers whether every
// update the mover holds for a secondary that never linked passes keep,
// whether it is still captured in the sidefile or formed into a record
// set: a stop that gives up only markers must not give up a write held
// beside them, in either place.
func TestHeldOnlyLooksAtEveryUpdateHeld(t *testing.T) {
	p := startPrimary(t, options{})
	markers := func(u *recordset.Update) bool { return u.Kind == recordset.KindMarker }
	ctx := context.Background()
	if n, ok := p.mover.HeldOnly(ctx, markers); !ok || n != 0 {
		t.Fatalf("nothing held: HeldOnly = %d, %v; want 0, true", n, ok)
	}
	for _, ss := range []string{"ss1", "ss2"} {
		if _, err := p.subs[ss].Mark(volName(ss), recordset.Marker{State: recordset.StateSuspended}); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := p.mover.HeldOnly(ctx, markers); !ok {
		t.Fatal("markers captured: HeldOnly says something else is held")
	}
	p.mover.Cut()
	if n, ok := p.mover.HeldOnly(ctx, markers); !ok || n != 2 {
		t.Fatalf("markers formed into record sets: HeldOnly = %d, %v; want 2, true", n, ok)
	}
	p.write(t, "ss2", []byte{1}, 0)
	if _, ok := p.mover.HeldOnly(ctx, markers); ok {
		t.Fatal("a write captured beside the markers: HeldOnly says only markers are held")
	}
	p.mover.Cut()
	if _, ok := p.mover.HeldOnly(ctx, markers); ok {
		t.Fatal("a write formed into a record set beside the markers: HeldOnly says only markers are held")
	}
}
