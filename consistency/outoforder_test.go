package consistency

import (
	"errors"
	"slices"
	"testing"
)

// TestStampsOutOfOrderRefused: a record set with an update stamped alike
// with another subsystem's pending one, or at or before an earlier update
// of its own subsystem, is refused with ErrOutOfOrder and changes nothing:
// the group formed after it holds every other update, each once, in stamp
// order, as EncodeGroup takes it. Stamps of several subsystems that
// interleave, whatever order their sets arrive in, are no such thing.
func TestStampsOutOfOrderRefused(t *testing.T) {
	f := New(session, []string{"a", "b", "c"}, Start{})
	mustAdd(t, f, set("a", 1, 50, 10, 20, 30), Accepted)
	mustAdd(t, f, set("b", 1, 50, 15, 25), Accepted)
	for _, bad := range []struct {
		name string
		ss   string
		seq  uint64
		ts   []int64
	}{
		{"alike another's first", "c", 1, []int64{5, 10}},
		{"alike another's last", "c", 1, []int64{30, 40}},
		{"alike in the middle", "c", 1, []int64{12, 25, 27}},
		{"its own earlier", "a", 2, []int64{30, 60}},
		{"below its own earlier", "a", 2, []int64{22}},
	} {
		if _, err := f.Add(set(bad.ss, bad.seq, 100, bad.ts...)); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("%s: Add = %v, want ErrOutOfOrder", bad.name, err)
		}
	}
	mustAdd(t, f, set("c", 1, 100, 11, 26, 31), Accepted)
	mustAdd(t, f, set("a", 2, 100, 32), Accepted)
	mustAdd(t, f, set("b", 2, 100, 33), Accepted)
	var got []int64
	for i, g := range formAll(f) {
		g.Number = uint64(i + 1)
		got = append(got, stamps(g.Updates)...)
		if _, err := EncodeGroup(nil, session, g); err != nil {
			t.Fatalf("group through %d: %v", g.Time, err)
		}
	}
	if want := []int64{10, 11, 15, 20, 25, 26, 30, 31, 32, 33}; !slices.Equal(got, want) {
		t.Fatalf("groups hold %v, want %v", got, want)
	}
}
