package secondary

import (
	"bytes"
	"testing"
	"time"

	"duplex/recordset"
)

// A fence this process made may be undone (UndoFence, a promotion in
// place that failed) while its volumes are where the fence left them. Once
// recover --at took them back in time, the groups after its point are gone
// from them and the old primary acknowledged them: undone, the fence let
// that primary in again over volumes that lack them, and a restart,
// unfenced, replayed them from the journal over the recovery. UndoFence
// must refuse, and the secondary stay fenced at the point.
func TestUndoFenceAfterRecoverToIsRefused(t *testing.T) {
	const n = 5
	dir := t.TempDir()
	fillVolume(t, dir)
	hist := historyOf(dir)
	r := openGateRigWith(t, dir, nil, hist)
	for k := uint64(1); k <= n; k++ {
		r.sendSet(t, k, []recordset.Update{{Volume: "vol1", Kind: recordset.KindWrite, Offset: k * regionBytes, Length: regionBytes,
			Data: bytes.Repeat([]byte{byte(k)}, regionBytes)}})
	}
	waitGate(t, "every group applied", func() bool { return r.sec.Stats().Group == n })
	r.close(t)

	sec, v := openStopped(t, dir, hist)
	defer v.Close()
	if _, err := sec.FenceToRecover(); err != nil {
		t.Fatal(err)
	}
	st, err := sec.RecoverTo(int64(2 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := sec.UndoFence(); err == nil {
		t.Errorf("the fence undone after recover --at took the volumes back to group %d of %d", st.Group, n)
	}
	if _, fenced := sec.Generation(); !fenced {
		t.Error("unfenced after recover --at")
	}
	if err := sec.Close(); err != nil {
		t.Fatal(err)
	}
	sec, _ = openStopped(t, dir, hist)
	defer sec.Close()
	if g := sec.Stats().Group; g != st.Group || !bytes.Equal(regions(t, v, n), groupRegions(st.Group, n)) {
		t.Errorf("opened again after recover --at to group %d: at group %d, regions % x", st.Group, g, regions(t, v, n))
	}
}
