package e2e

import (
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"duplex/config"
	"duplex/internal/testenv"
)

// loopDevice attaches a loop device over a new file of size bytes of seeded
// random data and returns its path. It is released however the test ends, a
// crash or timeout of the test binary included: the test holds it open and
// detaches it at once, so the kernel detaches it on its last close
// (autoclear), after the daemons are gone too (testenv.LoopDeviceOf).
func loopDevice(t *testing.T, size int64, seed uint64) string {
	t.Helper()
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	return testenv.LoopDeviceOf(t, data, 512)
}

// TestDaemonsBlockDevices runs a session whose volumes are loop devices at
// both sites (vol1; vol3 with no size in the config, so its size is its
// device's), an image file copied to a device (vol2) and files (vol4). The
// devices start with different random data at each site. Through the
// initial copy, writes, discards and write-zeroes by qemu-io, a suspension
// with writes and discards and the resync of its resume, a restart of the
// secondary and a kill -9 of the primary, a drain, and `duplex recover` at
// the secondary, every secondary volume ends
// byte-identical to its primary, and the devices keep their sizes.
func TestDaemonsBlockDevices(t *testing.T) {
	testenv.NeedTool(t, "qemu-io", "qemu-utils")
	const size = 16 << 20
	dev := map[string]string{
		"p1": loopDevice(t, size, 1), "s1": loopDevice(t, size, 2),
		"s2": loopDevice(t, size, 3),
		"p3": loopDevice(t, size, 4), "s3": loopDevice(t, size, 5),
	}
	s := newSession(t, sessionOpts{name: "e2e-blockdev", volSize: size, token: "secret", edit: func(c *config.Config) {
		for i := range c.Primary.Subsystems {
			for j := range c.Primary.Subsystems[i].Volumes {
				v := &c.Primary.Subsystems[i].Volumes[j]
				switch v.Name {
				case "vol1":
					v.Path = dev["p1"]
				case "vol3":
					v.Path, v.Size = dev["p3"], 0
				}
			}
		}
		for i := range c.Secondary.Volumes {
			v := &c.Secondary.Volumes[i]
			switch v.Name {
			case "vol1":
				v.Path = dev["s1"]
			case "vol2":
				v.Path = dev["s2"]
			case "vol3":
				v.Path = dev["s3"]
			}
		}
	}})
	if pv, _, _ := s.cfg.PrimaryVolume("vol3"); pv.Size != 0 {
		t.Fatalf("vol3 has size %d in the config, want none", pv.Size)
	}
	s.start()
	for _, st := range []string{"primary", "secondary"} {
		status := s.primaryStatus()
		if st == "secondary" {
			status = s.secondaryStatus()
		}
		for _, v := range status.Volumes {
			if v.SizeBytes != size {
				t.Errorf("%s: %s is %d bytes, want %d (vol3's from its device)", st, v.Name, v.SizeBytes, size)
			}
		}
	}

	for _, vol := range []string{"vol1", "vol2", "vol3"} {
		qemuIO(t, nbdURI(s.cfg.Primary.NBD, vol), false,
			"write -P 0xab 0 2M",
			"discard 1M 64k",
			"read -P 0 1M 64k",
			"write -z 1536k 64k",
			"read -P 0 1536k 64k",
			"discard 4M 2M", // device data from before the copy
			"read -P 0 4M 2M",
			"write -z 7M 1M",
			"discard 9M 2560", // whole sectors, not whole pages
			"write -z 10M 1536",
			"write -P 0xcd -f 3M 4k", // FUA
			"flush",
		)
	}
	s.waitConsistentAfter(time.Now())

	// Suspended, vol1 takes writes and discards into its bitmap; the resume
	// resyncs them (copied with their data: a device has no holes).
	if code, out, errOut := runDuplex(t, "pair", "suspend", "vol1", "--config", s.path); code != 0 {
		t.Fatalf("pair suspend exited %d: %s%s", code, out, errOut)
	}
	qemuIO(t, nbdURI(s.cfg.Primary.NBD, "vol1"), false,
		"write -P 0x11 8M 1M",
		"discard 0 512k",
		"write -z 12M 2M",
		"write -P 0x22 15M 64k",
	)
	qemuIO(t, nbdURI(s.cfg.Primary.NBD, "vol3"), false, "write -P 0x33 12M 1M")
	if code, out, errOut := runDuplex(t, "pair", "resume", "vol1", "--config", s.path); code != 0 {
		t.Fatalf("pair resume exited %d: %s%s", code, out, errOut)
	}
	s.waitLinked()
	qemuIO(t, nbdURI(s.cfg.Primary.NBD, "vol1"), false, "write -P 0x44 14M 4k", "discard 8M 64k")

	// Both sites open their devices again after a stop: the secondary's
	// after SIGTERM, the primary's after kill -9 (its activity log's
	// regions are copied from the devices).
	s.stopSecondary()
	qemuIO(t, nbdURI(s.cfg.Primary.NBD, "vol3"), false, "write -P 0x55 13M 64k", "discard 13M 4k")
	s.prim.kill()
	s.startSecondary()
	s.startPrimary()
	s.waitLinked()

	s.drainPrimary()
	s.stopSecondary()
	code, out, errOut := runDuplex(t, "recover", "--config", s.path)
	if code != 0 {
		t.Fatalf("recover exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	if !strings.Contains(out, "consistent as of ") {
		t.Errorf("recover does not say how consistent the copy is:\n%s", out)
	}
	t.Logf("recover:\n%s", out)

	s.assertImagesEqual()
	for _, d := range dev {
		if got := deviceSize(t, d); got != size {
			t.Errorf("%s is %d bytes after the session, want %d", d, got, size)
		}
	}
	// What the secondary reads back is what was written and discarded.
	qemuCheck := func(path string, cmds ...string) {
		t.Helper()
		qemuIO(t, path, true, cmds...)
	}
	qemuCheck(dev["s1"], "read -P 0 0 512k", "read -P 0xab 512k 512k", "read -P 0 1M 64k", "read -P 0xcd 3M 4k",
		"read -P 0 4M 2M", "read -P 0x11 8454144 960k", "read -P 0 8M 64k", "read -P 0 12M 2M", "read -P 0x44 14M 4k", "read -P 0x22 15M 64k")
	qemuCheck(dev["s3"], "read -P 0xab 0 1M", "read -P 0 1536k 64k", "read -P 0 4M 2M", "read -P 0 9M 2560", "read -P 0x33 12M 1M",
		"read -P 0 13M 4k", "read -P 0x55 13316k 60k")
	qemuCheck(dev["s2"], "read -P 0xab 0 1M", "read -P 0 7M 1M", "read -P 0 10M 1536", "read -P 0 11M 5M")
}

func deviceSize(t *testing.T, dev string) int64 {
	t.Helper()
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Seek(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
