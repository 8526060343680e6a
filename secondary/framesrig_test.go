package secondary

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"duplex/apply"
	"duplex/transport"
	"duplex/volume"
)

// framesRig is a secondary of subsystems ss1 and ss2 over vol1 and vol2,
// linked to one primary by the in-memory transport, its acknowledgements
// drained: the frame tests send it frames, then read its volumes and its
// journal in dir.
type framesRig struct {
	dir  string
	vols map[string]*volume.Volume
	sec  *Secondary
	conn transport.Conn
	stop func() // ends Run and closes the secondary; once, however often called
}

// openFramesRig opens the rig with volumes of volSize bytes, each
// volume's target wrapped by wrap (to slow or watch its writes), and
// sends the Hello.
func openFramesRig(t *testing.T, volSize int64, wrap func(apply.Target) apply.Target) framesRig {
	t.Helper()
	r := framesRig{dir: t.TempDir(), vols: map[string]*volume.Volume{}}
	for _, name := range []string{"vol1", "vol2"} {
		v, err := volume.Open(filepath.Join(r.dir, name+".img"), volSize)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { v.Close() })
		r.vols[name] = v
	}
	subs := []string{"ss1", "ss2"}
	sec, err := Open(Config{Session: "s", Subsystems: subs, Volumes: r.vols,
		JournalDir: filepath.Join(r.dir, "journal"), StatePath: filepath.Join(r.dir, "state.json"),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	r.sec = sec
	for name, tg := range sec.targets {
		sec.targets[name] = wrap(tg)
	}
	net := transport.NewMemNetwork(1, transport.Faults{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sec.Run(ctx, net) }()
	closed := false
	r.stop = func() {
		if !closed {
			closed = true
			cancel()
			<-done
			sec.Close()
		}
	}
	t.Cleanup(r.stop)
	conn, err := net.Dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r.conn = conn
	if err := conn.Send(transport.EncodeHello(transport.Hello{Session: "s", Subsystems: subs, Instance: 7,
		Volumes: []transport.VolumeInfo{{Name: "vol1", Size: volSize}, {Name: "vol2", Size: volSize}}})); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Recv(); err != nil { // the welcome
		t.Fatal(err)
	}
	go func() {
		for {
			if _, err := conn.Recv(); err != nil {
				return
			}
		}
	}()
	return r
}
