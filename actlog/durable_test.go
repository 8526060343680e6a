package actlog

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"duplex/disk"
)

// durableFS keeps, beside the real file, the image a crash would leave: a
// write reaches it only through a Sync that succeeds, and a failed Sync drops
// the writes before it (the pages the kernel could not write, marked clean).
// onSync, if set, runs at the start of every Sync: it may block, to hold a
// generation between its write and its sync, and its error fails the Sync.
type durableFS struct {
	disk.FS
	onSync func() error

	mu      sync.Mutex
	img     []byte
	pending []pendingWrite
	newest  uint64 // the highest generation the image held after a sync
	err     error  // the first generation written over a newer one
}

type pendingWrite struct {
	off int64
	b   []byte
}

func (d *durableFS) OpenFile(name string, flag int, perm fs.FileMode) (disk.File, error) {
	f, err := d.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &durableFile{File: f, d: d}, nil
}

type durableFile struct {
	disk.File
	d *durableFS
}

func (f *durableFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	f.d.mu.Lock()
	f.d.pending = append(f.d.pending, pendingWrite{off, append([]byte(nil), p[:n]...)})
	f.d.mu.Unlock()
	return n, err
}

func (f *durableFile) Sync() error {
	var err error
	if f.d.onSync != nil {
		err = f.d.onSync()
	}
	if err == nil {
		err = f.File.Sync()
	}
	d := f.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		for _, w := range d.pending {
			if end := w.off + int64(len(w.b)); end > int64(len(d.img)) {
				d.img = append(d.img, make([]byte, end-int64(len(d.img)))...)
			}
			copy(d.img[w.off:], w.b)
		}
		if _, gen, _, _, ok := newestValidSlot(d.img); ok {
			if gen < d.newest && d.err == nil {
				d.err = fmt.Errorf("generation %d is the newest on disk after generation %d was", gen, d.newest)
			}
			d.newest = max(d.newest, gen)
		}
	}
	d.pending = nil
	return err
}

// marked says whether the crash image marks region r of volume name.
func (d *durableFS) marked(name string, r int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	marks, _, _, _, ok := newestValidSlot(d.img)
	if !ok {
		return false
	}
	for _, rg := range marks[name] {
		if rg[0] == r*DefaultRegion {
			return true
		}
	}
	return false
}

// holdSync makes the next Sync wait until release is called (at the latest
// when the test ends), closing entered when it starts waiting; err is what it
// then returns.
func holdSync(t *testing.T, d *durableFS, err error) (entered chan struct{}, release func()) {
	entered, held := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(held) }) }
	t.Cleanup(release)
	var armed atomic.Bool
	armed.Store(true)
	d.onSync = func() error {
		if armed.CompareAndSwap(true, false) {
			close(entered)
			<-held
			return err
		}
		return nil
	}
	return entered, release
}

func openDurable(t *testing.T) (*Log, *durableFS) {
	t.Helper()
	d := &durableFS{FS: disk.OS}
	l, _, err := OpenFS(d, filepath.Join(t.TempDir(), "al"), map[string]int64{"a": 32 << 20}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, d
}

// within waits for ch, failing the test if it never comes: a writer left
// waiting forever holds its volume's I/O.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s: never returned", what)
		panic("unreachable")
	}
}

// A generation encoded before a region was marked cannot carry the mark, even
// if its sync ends after: the write to that region waits for the next one.
func TestMarkSetDuringASyncWaitsForTheNextGeneration(t *testing.T) {
	l, d := openDurable(t)
	entered, release := holdSync(t, d, nil)
	first := make(chan error, 1)
	go func() { first <- l.Mark("a", 0, 4096) }()
	within(t, entered, "the held sync")
	second := make(chan error, 1)
	go func() {
		err := l.Mark("a", 7<<20, 4096)
		if err == nil && !d.marked("a", 7) {
			err = errors.New("Mark returned before region 7 was marked on disk")
		}
		second <- err
	}()
	// Let the second Mark set its bit and wait before the held sync ends.
	for range 100 {
		runtime.Gosched()
	}
	release()
	if err := within(t, first, "the first Mark"); err != nil {
		t.Fatal(err)
	}
	if err := within(t, second, "the Mark set during the sync"); err != nil {
		t.Fatal(err)
	}
	if !d.marked("a", 0) {
		t.Fatal("region 0 not marked on disk")
	}
}

// When the sync carrying a mark fails, a second write to the region, waiting
// for that sync, must not go on: it writes the log again itself.
func TestWaiterOnAFailedSyncWritesTheLogAgain(t *testing.T) {
	l, d := openDurable(t)
	entered, release := holdSync(t, d, disk.EIO)
	first := make(chan error, 1)
	go func() { first <- l.Mark("a", 3<<20, 4096) }()
	within(t, entered, "the held sync")
	waiter := make(chan error, 1)
	go func() {
		err := l.Mark("a", 3<<20+8192, 4096)
		if err == nil && !d.marked("a", 3) {
			err = errors.New("Mark returned after its generation's sync failed, with region 3 not on disk")
		}
		waiter <- err
	}()
	other := make(chan error, 1)
	go func() {
		err := l.Mark("a", 9<<20, 4096)
		if err == nil && !d.marked("a", 9) {
			err = errors.New("Mark returned with region 9 not on disk")
		}
		other <- err
	}()
	for range 100 {
		runtime.Gosched()
	}
	release()
	if err := within(t, first, "the Mark whose sync failed"); err == nil {
		t.Fatal("Mark succeeded although its sync failed")
	}
	if err := within(t, waiter, "a Mark of the same region"); err != nil {
		t.Fatal(err)
	}
	if err := within(t, other, "a Mark of another region"); err != nil {
		t.Fatal(err)
	}
}

// A region cleaned while the cleaning generation is being written, and marked
// again meanwhile, is on disk when the new write goes on: the generation that
// lacks it is older than the one the write waits for.
func TestMarkDuringACleaningSyncWaitsForItsOwn(t *testing.T) {
	defer func(d time.Duration) { Idle = d }(Idle)
	Idle = 0
	l, d := openDurable(t)
	if err := l.Mark("a", 4<<20, 4096); err != nil {
		t.Fatal(err)
	}
	l.Wrote("a", 4<<20, 4096)
	l.Done("a", 4<<20, 4096)
	entered, release := holdSync(t, d, nil)
	cleaned := make(chan error, 1)
	go func() { cleaned <- l.Clean() }()
	within(t, entered, "the held sync") // the generation without region 4 is being synced
	again := make(chan error, 1)
	go func() {
		err := l.Mark("a", 4<<20, 4096)
		if err == nil && !d.marked("a", 4) {
			err = errors.New("Mark of a region cleaned during a sync returned with the region not on disk")
		}
		again <- err
	}()
	for range 100 {
		runtime.Gosched()
	}
	release()
	if err := within(t, cleaned, "Clean"); err != nil {
		t.Fatal(err)
	}
	if err := within(t, again, "the Mark of the cleaned region"); err != nil {
		t.Fatal(err)
	}
}

// Close while a generation is being synced, with writes waiting for the next
// one: every waiter returns, either with its mark on disk or with an error.
func TestCloseDuringASyncLeavesNoWriterWaiting(t *testing.T) {
	for _, fail := range []bool{false, true} {
		t.Run(fmt.Sprintf("syncFails=%v", fail), func(t *testing.T) {
			l, d := openDurable(t)
			var serr error
			if fail {
				serr = disk.EIO
			}
			entered, release := holdSync(t, d, serr)
			first := make(chan error, 1)
			go func() { first <- l.Mark("a", 0, 4096) }()
			within(t, entered, "the held sync")
			const n = 4
			waiters := make(chan error, n)
			for i := range n {
				go func() {
					r := int64(2 + i)
					err := l.Mark("a", r<<20, 4096)
					if err == nil && !d.marked("a", r) {
						err = fmt.Errorf("Mark of region %d returned with it not on disk", r)
					}
					waiters <- err
				}()
			}
			closed := make(chan error, 1)
			go func() { closed <- l.Close() }()
			for range 100 {
				runtime.Gosched()
			}
			release()
			err := within(t, first, "the Mark being synced at Close")
			if fail && err == nil {
				t.Fatal("Mark succeeded although its sync failed")
			}
			if !fail && err != nil {
				t.Fatal(err)
			}
			within(t, closed, "Close")
			for range n {
				if err := within(t, waiters, "a Mark waiting at Close"); err != nil && !errors.Is(err, fs.ErrClosed) && !errors.Is(err, disk.EIO) {
					t.Fatal(err)
				}
			}
		})
	}
}

// Writers, copies, suspended writes and cleaning at once, with syncs that
// fail and syncs that are slow: every Mark that returns has its regions in the
// crash image until the write is acknowledged, no generation is written over a
// newer one, and no writer waits forever.
func TestGroupCommitKeepsEveryReturnedMarkOnDisk(t *testing.T) {
	defer func(d time.Duration) { Idle = d }(Idle)
	Idle = 0
	d := &durableFS{FS: disk.OS}
	var syncs atomic.Int64
	d.onSync = func() error {
		n := syncs.Add(1)
		if n%3 == 0 {
			runtime.Gosched()
		}
		if n%5 == 0 {
			return disk.EIO
		}
		return nil
	}
	l, _, err := OpenFS(d, filepath.Join(t.TempDir(), "al"), map[string]int64{"a": 16 << 20, "s": 16 << 20}, DefaultRegion)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	const writers, rounds = 4, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers*rounds+64)
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range rounds {
				r := rng.Int64N(16)
				off, n := r<<20+rng.Int64N(1<<19), int64(4096)
				if rng.IntN(4) == 0 {
					n = 1 << 20 // into the next region too
				}
				var merr error
				switch rng.IntN(3) {
				case 0:
					merr = l.MarkCopy("a", off, n)
				case 1:
					merr = l.Mark("a", off, n)
				default:
					if err := l.Stick("s", off, n); err == nil {
						for x := off >> 20; x <= min((off+n-1)>>20, 15); x++ {
							if !d.marked("s", x) {
								errs <- fmt.Errorf("Stick of region %d returned with it not on disk", x)
							}
						}
					}
					continue
				}
				if merr != nil {
					if !errors.Is(merr, disk.EIO) {
						errs <- merr
					}
					continue
				}
				for range rng.IntN(3) {
					runtime.Gosched()
				}
				for x := off >> 20; x <= min((off+n-1)>>20, 15); x++ {
					if !d.marked("a", x) {
						errs <- fmt.Errorf("region %d not on disk while its write is unacknowledged", x)
					}
				}
				l.Wrote("a", off, n)
				l.Done("a", off, n)
			}
		}()
	}
	cleaned := make(chan struct{})
	go func() {
		defer close(cleaned)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := l.Clean(); err != nil && !errors.Is(err, disk.EIO) {
				errs <- err
			}
			runtime.Gosched()
		}
	}()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	within(t, done, "the writers")
	close(stop)
	<-cleaned
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		t.Fatal(d.err)
	}
	if syncs.Load() < 10 {
		t.Fatalf("only %d syncs: the test did not exercise the group commit", syncs.Load())
	}
}
