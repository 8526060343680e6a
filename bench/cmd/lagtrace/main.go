// Command lagtrace reads the debug log of a secondary (--log-level debug:
// one "group applied" line per group with the wall time of each step as an
// offset from the group's consistency time, and a "checkpointer" line per
// checkpoint) and says where the lag went: each step's share of a group's
// delay, at the percentiles and in the groups applied late.
//
//	go run ./bench/cmd/lagtrace [-late 40ms] [-from T -to T] secondary.log...
//
// The lag sampled at an instant is the time since the newest applied
// group's consistency time: the interval's saw-tooth plus that group's
// delay from its cut to applied, which is what the steps divide.
package main

import (
	"bufio"
	"cmp"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// steps name the offsets of a "group applied" line in the order a group
// takes them; each step is the difference from the one before.
var steps = []struct{ key, name string }{
	{"cut_ms", "consistency time → the mover's read of the sidefile (primary)"},
	{"arrived_ms", "the mover's read → read off the link (primary's send, link, the secondary's reader)"},
	{"formed_ms", "read → formed (the receiver busy: a journal write before it)"},
	{"journal_ms", "formed → journal write begins"},
	{"synced_ms", "journal write + fsync"},
	{"apply_ms", "synced → the applier starts it (acknowledged, queued)"},
	{"applied_ms", "apply (the volumes' page cache)"},
}

type group struct {
	at      time.Time
	number  uint64
	batch   int
	updates int
	offs    []float64 // by steps
}

type checkpoint struct {
	at        time.Time
	wb, fsync float64
}

func main() {
	late := flag.Duration("late", 40*time.Millisecond, "a group is late when applied this long after its consistency time")
	from := flag.String("from", "", "only lines logged at or after this RFC 3339 time")
	to := flag.String("to", "", "only lines logged before this RFC 3339 time")
	flag.Parse()
	var lo, hi time.Time
	var err error
	if *from != "" {
		if lo, err = time.Parse(time.RFC3339Nano, *from); err != nil {
			fmt.Fprintln(os.Stderr, "lagtrace: -from:", err)
			os.Exit(2)
		}
	}
	if *to != "" {
		if hi, err = time.Parse(time.RFC3339Nano, *to); err != nil {
			fmt.Fprintln(os.Stderr, "lagtrace: -to:", err)
			os.Exit(2)
		}
	}
	var gs []group
	var cks []checkpoint
	for _, p := range flag.Args() {
		f, err := os.Open(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lagtrace:", err)
			os.Exit(1)
		}
		g, c, err := read(f, lo, hi)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "lagtrace: %s: %v\n", p, err)
			os.Exit(1)
		}
		gs, cks = append(gs, g...), append(cks, c...)
	}
	report(os.Stdout, gs, cks, float64(late.Microseconds())/1e3)
}

// fields splits a text-handler line into its key=value pairs.
func fields(line string) map[string]string {
	m := map[string]string{}
	for len(line) > 0 {
		line = strings.TrimLeft(line, " ")
		eq := strings.IndexByte(line, '=')
		if eq < 0 {
			break
		}
		k := line[:eq]
		line = line[eq+1:]
		var v string
		if strings.HasPrefix(line, `"`) {
			end := strings.Index(line[1:], `"`)
			if end < 0 {
				break
			}
			v, line = line[1:end+1], line[end+2:]
		} else {
			sp := strings.IndexByte(line, ' ')
			if sp < 0 {
				sp = len(line)
			}
			v, line = line[:sp], line[sp:]
		}
		m[k] = v
	}
	return m
}

func read(r io.Reader, lo, hi time.Time) ([]group, []checkpoint, error) {
	var gs []group
	var cks []checkpoint
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "level=DEBUG") {
			continue
		}
		m := fields(line)
		at, err := time.Parse(time.RFC3339Nano, m["time"])
		if err != nil || (!lo.IsZero() && at.Before(lo)) || (!hi.IsZero() && !at.Before(hi)) {
			continue
		}
		switch m["msg"] {
		case "group applied":
			g := group{at: at}
			g.number, _ = strconv.ParseUint(m["group"], 10, 64)
			g.batch, _ = strconv.Atoi(m["batch"])
			g.updates, _ = strconv.Atoi(m["updates"])
			for _, st := range steps {
				v, err := strconv.ParseFloat(m[st.key], 64)
				if err != nil {
					return nil, nil, fmt.Errorf("group %d: %s: %w", g.number, st.key, err)
				}
				g.offs = append(g.offs, v)
			}
			gs = append(gs, g)
		case "checkpointer":
			c := checkpoint{at: at}
			c.wb, _ = strconv.ParseFloat(m["writeback_start_ms"], 64)
			c.fsync, _ = strconv.ParseFloat(m["checkpoint_ms"], 64)
			cks = append(cks, c)
		}
	}
	return gs, cks, sc.Err()
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(p / 100 * float64(len(s)-1))
	return s[i]
}

func (g group) step(i int) float64 {
	if i == 0 {
		return g.offs[0]
	}
	return g.offs[i] - g.offs[i-1]
}

func report(w io.Writer, gs []group, cks []checkpoint, late float64) {
	if len(gs) == 0 {
		fmt.Fprintln(w, "no \"group applied\" lines (is the secondary's --log-level debug?)")
		return
	}
	fmt.Fprintf(w, "%d groups, %s to %s\n\n", len(gs), gs[0].at.Format("15:04:05.000"), gs[len(gs)-1].at.Format("15:04:05.000"))
	var lateGs []group
	for _, g := range gs {
		if g.offs[len(g.offs)-1] > late {
			lateGs = append(lateGs, g)
		}
	}
	fmt.Fprintf(w, "| step (ms) | p50 | p90 | p99 | max | mean, all | mean, late groups |\n|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(name string, f func(g group) float64) {
		var all, lt []float64
		var sa, sl float64
		for _, g := range gs {
			all = append(all, f(g))
			sa += f(g)
		}
		for _, g := range lateGs {
			lt = append(lt, f(g))
			sl += f(g)
		}
		ml := 0.0
		if len(lt) > 0 {
			ml = sl / float64(len(lt))
		}
		fmt.Fprintf(w, "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |\n", name, pct(all, 50), pct(all, 90), pct(all, 99), pct(all, 100), sa/float64(len(all)), ml)
	}
	for i, st := range steps {
		row(st.name, func(g group) float64 { return g.step(i) })
	}
	row("**cut → applied**", func(g group) float64 { return g.offs[len(g.offs)-1] })
	row("groups per fsync", func(g group) float64 { return float64(g.batch) })
	row("updates per group", func(g group) float64 { return float64(g.updates) })
	early := 0
	for _, g := range gs {
		if g.offs[0] < 0 {
			early++
		}
	}
	if early > 0 {
		// The secondary times a group's cut from the read that reached its
		// time, so only the primary's clock puts it before: its timer,
		// whose stamps are the consistency times, ran ahead of the wall
		// clock the reads are stamped on (a start after a crash stamps up
		// to its lease ahead, 2 s, until the clock catches up; a clock
		// stepped back). Every offset of those groups is short by the lead.
		// (A secondary that timed the cut from the frame completing the
		// group put it before as well when a set arrived ahead of a missing
		// one.)
		fmt.Fprintf(w, "\n%d of %d groups were cut before their consistency time: the primary's timer ran ahead of its clock "+
			"(a start after a crash, a clock stepped back); their offsets are short by that lead, at most %.1f ms\n",
			early, len(gs), -slices.MinFunc(gs, func(a, b group) int { return cmp.Compare(a.offs[0], b.offs[0]) }).offs[0])
	}
	fmt.Fprintf(w, "\n%d of %d groups (%.1f %%) applied more than %.0f ms after their consistency time; their largest step:\n\n",
		len(lateGs), len(gs), 100*float64(len(lateGs))/float64(len(gs)), late)
	by := make([]int, len(steps))
	for _, g := range lateGs {
		best := 0
		for i := range steps {
			if g.step(i) > g.step(best) {
				best = i
			}
		}
		by[best]++
	}
	for i, st := range steps {
		if by[i] > 0 {
			fmt.Fprintf(w, "- %s: %d\n", st.name, by[i])
		}
	}
	// Consecutive late groups make a stretch; the longest ones first.
	type stretch struct{ first, last int }
	var sts []stretch
	for i := 0; i < len(gs); i++ {
		if gs[i].offs[len(gs[i].offs)-1] <= late {
			continue
		}
		j := i
		for j+1 < len(gs) && gs[j+1].offs[len(gs[j+1].offs)-1] > late {
			j++
		}
		sts = append(sts, stretch{i, j})
		i = j
	}
	slices.SortFunc(sts, func(a, b stretch) int { return (b.last - b.first) - (a.last - a.first) })
	if len(sts) > 5 {
		sts = sts[:5]
	}
	for _, st := range sts {
		a, b := gs[st.first], gs[st.last]
		fmt.Fprintf(w, "\nstretch %s–%s: groups %d–%d (%d); mean ms by step:", a.at.Format("15:04:05.000"), b.at.Format("15:04:05.000"),
			a.number, b.number, st.last-st.first+1)
		for i := range steps {
			var s float64
			for k := st.first; k <= st.last; k++ {
				s += gs[k].step(i)
			}
			fmt.Fprintf(w, " %.1f", s/float64(st.last-st.first+1))
		}
		fmt.Fprintln(w)
		for _, c := range cks {
			if !c.at.Before(a.at.Add(-200*time.Millisecond)) && !c.at.After(b.at) {
				fmt.Fprintf(w, "  checkpointer ended %s: writeback start %.1f ms, checkpoint %.1f ms\n", c.at.Format("15:04:05.000"), c.wb, c.fsync)
			}
		}
	}
	if len(cks) > 0 {
		var wb, fs []float64
		for _, c := range cks {
			wb, fs = append(wb, c.wb), append(fs, c.fsync)
		}
		fmt.Fprintf(w, "\ncheckpointer calls over 1 ms: %d; writeback start p50/p90/p99/max %.1f/%.1f/%.1f/%.1f ms; checkpoint %.1f/%.1f/%.1f/%.1f ms\n",
			len(cks), pct(wb, 50), pct(wb, 90), pct(wb, 99), pct(wb, 100), pct(fs, 50), pct(fs, 90), pct(fs, 99), pct(fs, 100))
	}
}
