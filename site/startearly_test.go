package site

import (
	"context"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"duplex/config"
	"duplex/control"
	"duplex/disk"
	"duplex/internal/testenv"
	"duplex/transport"
)

// hungMkdir is a disk whose MkdirAll of dir waits until held is closed.
type hungMkdir struct {
	disk.FS
	dir  string
	held chan struct{}
}

func (h hungMkdir) MkdirAll(dir string, perm fs.FileMode) error {
	if filepath.Clean(dir) == h.dir {
		<-h.held
	}
	return h.FS.MkdirAll(dir, perm)
}

// TestAStartWaitingBeforeItsLockAnswersStatus: what a site's start does
// on its disk before its lock (the primary's state directory made, the
// secondary's lock taken under duplex secondary, a promoted site's
// promotion record read, the reverse primary's pair state made from the
// promotion) waits on a disk that stopped answering: the control address
// answers all the same once the start has waited the slow disk's wait,
// status saying what the start waits for, and the site opens once the
// disk answers.
func TestAStartWaitingBeforeItsLockAnswersStatus(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	const slow = 200 * time.Millisecond
	promotion := func(cfg *config.Config) string { return filepath.Join(PromotedDir(cfg), "promotion.json") }
	hangRead := func(file string) (disk.FS, func()) {
		held := make(chan struct{})
		in := disk.NewInjector(nil)
		in.Inject(disk.Fault{Op: disk.OpRead, Under: file, Hang: held})
		return in, sync.OnceFunc(func() { close(held) })
	}
	for _, tc := range []struct {
		name string
		// cfg is the site's config, promote whether it is promoted first.
		cfg     func(*testing.T) *config.Config
		promote bool
		// hang is the disk the site starts on, hung until release, and
		// step what its status then says the start waits for.
		hang func(*config.Config) (fsys disk.FS, release func(), step string)
		// open opens the site; close closes it.
		open func(*config.Config, disk.FS) (close func(), err error)
	}{
		{"primary, its state directory made", linkConfig, false,
			func(cfg *config.Config) (disk.FS, func(), string) {
				h := hungMkdir{FS: disk.OS, dir: PairStateDir(cfg), held: make(chan struct{})}
				return h, sync.OnceFunc(func() { close(h.held) }), PairStateDir(cfg)
			},
			func(cfg *config.Config, fsys disk.FS) (func(), error) {
				p, err := OpenPrimary(cfg, quiet, PrimaryOptions{FS: fsys, slowDisk: slow})
				if err != nil {
					return nil, err
				}
				return func() { p.actlog.Close(); p.close() }, nil
			}},
		{"duplex secondary, its lock taken", linkConfig, false,
			func(cfg *config.Config) (disk.FS, func(), string) {
				l := slowLock{FS: disk.OS, held: make(chan struct{})}
				return l, sync.OnceFunc(func() { close(l.held) }), SiteLockPath(cfg)
			},
			func(cfg *config.Config, fsys disk.FS) (func(), error) {
				ctx, cancel := context.WithCancel(context.Background())
				opened, ended := make(chan error, 1), make(chan struct{})
				go func() {
					defer close(ended)
					_, err := RunSecondary(ctx, cfg, quiet, SecondaryOptions{FS: fsys}, DiskRetry{}, func(*Secondary) { opened <- nil })
					select {
					case opened <- err:
					default:
					}
				}()
				if err := <-opened; err != nil {
					cancel()
					return nil, err
				}
				return func() { cancel(); <-ended }, nil
			}},
		{"promoted site, its promotion read", linkConfig, true,
			func(cfg *config.Config) (disk.FS, func(), string) {
				fsys, release := hangRead(promotion(cfg))
				return fsys, release, promotion(cfg)
			},
			func(cfg *config.Config, fsys disk.FS) (func(), error) {
				p, err := OpenPromoted(cfg, quiet, PromotedOptions{FS: fsys, slowDisk: slow})
				if err != nil {
					return nil, err
				}
				return func() { p.close() }, nil
			}},
		{"reverse primary, its promotion read", rejoinConfig, true,
			func(cfg *config.Config) (disk.FS, func(), string) {
				fsys, release := hangRead(promotion(cfg))
				return fsys, release, promotion(cfg)
			},
			openReverse(quiet, slow)},
		{"reverse primary, its pair state made", rejoinConfig, true,
			func(cfg *config.Config) (disk.FS, func(), string) {
				held := make(chan struct{})
				in := disk.NewInjector(nil)
				in.Inject(disk.Fault{Op: disk.OpCreate, Under: ReverseDir(cfg), Hang: held})
				return in, sync.OnceFunc(func() { close(held) }), ReverseDir(cfg)
			},
			openReverse(quiet, slow)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg(t)
			cfg.Primary.Secondary = testenv.FreeAddr(t)
			addr := &cfg.Primary.Control
			if tc.promote || strings.Contains(tc.name, "secondary") {
				addr = &cfg.Secondary.Control
			}
			if tc.promote {
				cfg.Secondary.NBD = "127.0.0.1:0"
				firstStart(t, cfg)
				if _, _, _, err := Promote(context.Background(), cfg, quiet, nil); err != nil {
					t.Fatal(err)
				}
			}
			*addr = testenv.FreeAddr(t)
			fsys, release, step := tc.hang(cfg)
			opened := make(chan struct{})
			var closeSite func()
			go func() {
				defer close(opened)
				var err error
				if closeSite, err = tc.open(cfg, fsys); err != nil {
					t.Error(err)
				}
			}()
			t.Cleanup(func() {
				release()
				<-opened
				if closeSite != nil {
					closeSite()
				}
			})
			at := control.Endpoint{Addr: *addr}
			var st control.Status
			var err error
			t.Cleanup(func() {
				switch {
				case !t.Failed():
				case err != nil:
					t.Logf("the last status: %v", err)
				case st.Starting != nil:
					t.Logf("the last status: starting %+v", *st.Starting)
				default:
					t.Logf("the last status: running, role %s", st.Role)
				}
			})
			waitFor(t, 20*time.Second, "the starting site's status to name what it waits for", func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				st, err = control.Fetch(ctx, at)
				return err == nil && st.Starting != nil && st.Starting.Step == step
			})
			t.Logf("status: role %s, starting %+v", st.Role, *st.Starting)
			release()
			select {
			case <-opened:
			case <-time.After(20 * time.Second):
				t.Fatal("the start has not ended 20s after the disk answered")
			}
		})
	}
}

// openReverse opens the primary of the reverse direction on fsys.
func openReverse(log *slog.Logger, slow time.Duration) func(*config.Config, disk.FS) (func(), error) {
	return func(cfg *config.Config, fsys disk.FS) (func(), error) {
		opts := linkOptions(transport.NewMemNetwork(2, transport.Faults{}))
		opts.FS, opts.slowDisk = fsys, slow
		p, err := OpenReversePrimary(cfg, log, opts)
		if err != nil {
			return nil, err
		}
		return func() { p.actlog.Close(); p.close() }, nil
	}
}
