package secondary

import (
	"os"
	"strings"
	"testing"
)

// BenchmarkApplyViewsAB measures what an open read view costs the applying
// secondary: rounds alternate no view, a view in memory (an NBD
// connection's) and a view spilled to a scratch file (a failover drill's),
// in one run so that load swings hit all three, each round a fresh
// secondary (no history) fed the same record sets as BenchmarkApplyHistoryAB.
// It reports, per MiB applied, the process CPU time and the wall time of
// each, the heap the view holds at the end, and the scratch file's bytes.
func BenchmarkApplyViewsAB(b *testing.B) {
	views := []string{"", "memory", "spilled"}
	for _, shape := range applyShapes {
		b.Run(shape.name, func(b *testing.B) {
			noPoison(b)
			const sets = 64
			var last [3]*round
			var cpu, wall [3]float64
			rounds := max(b.N, 2)
			for r := range rounds {
				for k := range views {
					k = (k + r) % len(views)
					rd := applyRound(b, &round{view: views[k]}, sets, shape.perSet, shape.chunk, uint64(r))
					cpu[k] += rd.cpu.Seconds()
					wall[k] += rd.wall.Seconds()
					last[k] = rd
				}
			}
			mib := float64(rounds) * sets * float64(shape.perSet*shape.chunk) / (1 << 20)
			for k, name := range []string{"none", "memory", "spilled"} {
				b.ReportMetric(cpu[k]*1000/mib, name+"-cpu-ms/MiB")
				b.ReportMetric(mib/wall[k], name+"-MiB/s")
				b.ReportMetric(float64(last[k].heap)/(1<<20), name+"-heap-MiB")
			}
			b.ReportMetric(float64(last[2].scratch)/(1<<20), "spilled-scratch-MiB")
			la, _ := os.ReadFile("/proc/loadavg")
			b.Logf("%s: %d rounds of %.0f MiB; load average %s", shape.name, rounds, mib/float64(rounds), strings.TrimSpace(string(la)))
		})
	}
}

// BenchmarkOpenAtAB measures opening a view of a past time (NAME@TIME, or
// a drill --at): with history kept, 64 record sets are applied, then a view
// of the oldest group is opened, reading the undo of every later group,
// into memory or spilled to a scratch file, alternately. It reports the
// CPU and wall time per MiB of undo read, and the heap the open view holds.
func BenchmarkOpenAtAB(b *testing.B) {
	for _, shape := range applyShapes {
		b.Run(shape.name, func(b *testing.B) {
			noPoison(b)
			const sets = 64
			var cpu, wall, undo [2]float64
			var heap [2]int64
			rounds := max(b.N, 2)
			for r := range rounds {
				for k := range 2 {
					k = (k + r) % 2
					rd := applyRound(b, &round{hist: true, openAt: true, view: []string{"", "spilled"}[k]}, sets, shape.perSet, shape.chunk, uint64(r))
					cpu[k] += rd.openCPU.Seconds()
					wall[k] += rd.openWall.Seconds()
					undo[k] += float64(rd.openUndo) / (1 << 20)
					heap[k] = rd.openHeap
				}
			}
			for k, name := range []string{"memory", "spilled"} {
				b.ReportMetric(cpu[k]*1000/undo[k], name+"-open-cpu-ms/MiB")
				b.ReportMetric(wall[k]*1000/undo[k], name+"-open-wall-ms/MiB")
				b.ReportMetric(undo[k]/float64(rounds), name+"-undo-MiB")
				b.ReportMetric(float64(heap[k])/(1<<20), name+"-heap-MiB")
			}
			la, _ := os.ReadFile("/proc/loadavg")
			b.Logf("%s: %d rounds; load average %s", shape.name, rounds, strings.TrimSpace(string(la)))
		})
	}
}

// BenchmarkOpenAtApplies measures whether applying goes on while a view of
// a past time opens: as in BenchmarkOpenAtAB, with one more record set sent
// as the view starts to open. It reports how long that set took to be
// applied, and that as a share of the open's wall time, so that the load
// weighs on both alike: near 1 or more if the open holds applying back,
// far below 1 if not.
func BenchmarkOpenAtApplies(b *testing.B) {
	for _, shape := range applyShapes {
		b.Run(shape.name, func(b *testing.B) {
			noPoison(b)
			const sets = 64
			var wait, wall [2]float64
			rounds := max(b.N, 2)
			for r := range rounds {
				for k := range 2 {
					k = (k + r) % 2
					rd := applyRound(b, &round{hist: true, openAt: true, applyDuring: true, view: []string{"", "spilled"}[k]}, sets, shape.perSet, shape.chunk, uint64(r))
					wait[k] += rd.applyWait.Seconds()
					wall[k] += rd.openWall.Seconds()
				}
			}
			for k, name := range []string{"memory", "spilled"} {
				b.ReportMetric(wait[k]*1000/float64(rounds), name+"-apply-wait-ms")
				b.ReportMetric(wall[k]*1000/float64(rounds), name+"-open-wall-ms")
				b.ReportMetric(wait[k]/wall[k], name+"-wait/open")
			}
			la, _ := os.ReadFile("/proc/loadavg")
			b.Logf("%s: %d rounds; load average %s", shape.name, rounds, strings.TrimSpace(string(la)))
		})
	}
}
