package workload

import (
	"context"
	"sync"
	"testing"
)

// memTarget keeps every volume in memory and can freeze one, as a copy that
// stops following a suspended pair.
type memTarget struct {
	mu     sync.Mutex
	vols   [][]byte
	frozen map[int]bool
}

func newMemTarget(l Layout) *memTarget {
	m := &memTarget{frozen: map[int]bool{}}
	for range l.Volumes {
		m.vols = append(m.vols, make([]byte, l.BlocksPerVolume*BlockSize))
	}
	return m
}

func (m *memTarget) WriteAt(_ context.Context, v int, p []byte, off int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.frozen[v] {
		copy(m.vols[v][off:], p)
	}
	return nil
}

func (m *memTarget) read(v int, p []byte, off int64) error {
	copy(p, m.vols[v][off:])
	return nil
}

func (m *memTarget) image(t *testing.T, l Layout) Image {
	t.Helper()
	img, bad, err := ReadImage(l, m.read)
	if err != nil || len(bad) > 0 {
		t.Fatalf("ReadImage: %v %v", err, bad)
	}
	return img
}

func TestCheckFindsMissingDependency(t *testing.T) {
	l := Layout{Volumes: 2, BlocksPerVolume: 16, Clients: 2}
	m := newMemTarget(l)
	if _, err := Run(context.Background(), l, m, 50, 1); err != nil {
		t.Fatal(err)
	}
	if bad, err := Check(l, m.read); err != nil || len(bad) > 0 {
		t.Fatalf("complete image: %v %v", err, bad)
	}
	// Volume 1 stops following (its pair suspended) while writes go on.
	m.frozen[1] = true
	l2 := l
	l2.FirstClient = 100
	if _, err := Run(context.Background(), l2, m, 50, 2); err != nil {
		t.Fatal(err)
	}
	img := m.image(t, l)
	if bad := img.Violations(img, Scope{}); len(bad) == 0 {
		t.Fatal("a copy with one volume frozen passed the check")
	}
	run := func(c uint32) int { return int(c / 100) }
	if bad := img.Violations(img, Scope{Outside: func(v int) bool { return v == 1 }, Run: run}); len(bad) > 0 {
		t.Errorf("volume 1 outside the group: %d violations, first %s", len(bad), bad[0])
	}
}

func TestViolationsLaterRunMeetsDependency(t *testing.T) {
	l := Layout{Volumes: 2, BlocksPerVolume: 8, Clients: 2}
	m := newMemTarget(l)
	if _, err := Run(context.Background(), l, m, 40, 3); err != nil {
		t.Fatal(err)
	}
	l2 := l
	l2.FirstClient = 100
	if _, err := Run(context.Background(), l2, m, 3, 4); err != nil {
		t.Fatal(err)
	}
	img := m.image(t, l)
	if bad := img.Violations(img, Scope{}); len(bad) == 0 {
		t.Skip("no block of the first run depends on one the second overwrote")
	}
	run := func(c uint32) int { return int(c / 100) }
	if bad := img.Violations(img, Scope{Run: run}); len(bad) > 0 {
		t.Errorf("%d violations with runs known, first %s", len(bad), bad[0])
	}
}

func TestViolationsAgainstLaterRead(t *testing.T) {
	l := Layout{Volumes: 3, BlocksPerVolume: 12, Clients: 3}
	m := newMemTarget(l)
	if _, err := Run(context.Background(), l, m, 30, 5); err != nil {
		t.Fatal(err)
	}
	early := m.image(t, l)
	// Reading the dependencies before the holders is not sound: the check
	// must then see what is missing.
	l3 := l
	l3.FirstClient = 10
	if _, err := Run(context.Background(), l3, m, 30, 6); err != nil {
		t.Fatal(err)
	}
	newest := m.image(t, l)
	if bad := newest.Violations(early, Scope{}); len(bad) == 0 {
		t.Error("holders read after their dependencies passed against the older read")
	}
	if bad := early.Violations(newest, Scope{Run: func(c uint32) int { return int(c / 10) }}); len(bad) > 0 {
		t.Errorf("holders read before their dependencies: %s", bad[0])
	}
}
