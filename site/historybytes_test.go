package site

import (
	"testing"
	"time"

	"duplex/control"
)

// TestBytesReplicatedIsOneCountEverywhere: bytes_replicated in the status
// JSON and in /v1/history (whose rise the status page charts as
// throughput) is the count the metric duplex_bytes_replicated_total gives,
// at both sites: the data of the updates journaled at the secondary. The
// primary filled both with the bytes it sent on the link (heartbeats,
// headers and resends included, so an idle session charts throughput) and
// the secondary with the bytes it applied.
func TestBytesReplicatedIsOneCountEverywhere(t *testing.T) {
	const n = 64 << 10
	p, s := linkedSitesWithAWrite(t, n)
	var pm, sm map[string]control.Sample
	waitFor(t, 30*time.Second, "both sites to count the write", func() bool {
		pm, sm = sampleMap(p.Samples()), sampleMap(s.samples())
		return pm["sidefile_bytes"].Value == 0 && pm["bytes_replicated_total"].Value >= n &&
			pm["bytes_replicated_total"].Value == sm["bytes_replicated_total"].Value
	})
	// Idle now: a second more of heartbeats must not count as replicated.
	time.Sleep(time.Second)
	pm, sm = sampleMap(p.Samples()), sampleMap(s.samples())
	for _, c := range []struct {
		what   string
		metric float64
		got    uint64
	}{
		{"primary status bytes_replicated", pm["bytes_replicated_total"].Value, p.Status().BytesReplicate},
		{"primary /v1/history bytes_replicated", pm["bytes_replicated_total"].Value, p.historySample().BytesReplicated},
		{"secondary status bytes_replicated", sm["bytes_replicated_total"].Value, s.Status().BytesReplicate},
		{"secondary /v1/history bytes_replicated", sm["bytes_replicated_total"].Value, s.historySample().BytesReplicated},
	} {
		if float64(c.got) != c.metric {
			t.Errorf("%s = %d, duplex_bytes_replicated_total = %v", c.what, c.got, c.metric)
		}
	}
}
