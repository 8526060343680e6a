// Command prefixflush measures what starting the writeback of a group's
// prefixes saves the checkpoint that follows: a coupled secondary applies a
// group straddling the Gate's limit in prefixes as the limit moves, and the
// checkpoint once the group is whole fsyncs the volume (fdatasync) beside
// the journal's fsyncs. It writes -mib MiB to an image file in -steps
// prefixes -pause apart, then times the fdatasync; rounds alternate
// between no writeback started (even) and sync_file_range after each
// prefix (odd), as the checkpointer does after each group it is asked for.
//
//	go run ./bench/cmd/prefixflush -dir /tmp/NAME -mib 256 -steps 16 -pause 50ms -rounds 5
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"duplex/volume"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the volumes' file system")
	mib := flag.Int("mib", 256, "MiB written in prefixes before the checkpoint")
	steps := flag.Int("steps", 16, "prefixes")
	pause := flag.Duration("pause", 50*time.Millisecond, "time between prefixes")
	rounds := flag.Int("rounds", 5, "rounds of each kind")
	flag.Parse()
	path := filepath.Join(*dir, "prefixflush.img")
	os.Remove(path)
	v, err := volume.Open(path, int64(*mib)<<20)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.Remove(path)
	defer v.Close()
	buf := make([]byte, 1<<20)
	flush := map[bool][]time.Duration{}
	per := *mib / *steps
	for r := range 2 * *rounds {
		started := r%2 == 1
		for s := range *steps {
			for k := range per {
				buf[0] = byte(r + k)
				if err := v.WriteAt(buf, int64(s*per+k)<<20); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
			}
			if started {
				if err := v.StartWriteback(); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
			}
			time.Sleep(*pause)
		}
		t := time.Now()
		if err := v.Flush(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		flush[started] = append(flush[started], time.Since(t))
	}
	for _, started := range []bool{false, true} {
		d := flush[started]
		slices.Sort(d)
		fmt.Printf("writeback started after each prefix: %-5v checkpoint fdatasync median %v, all %v\n", started, d[len(d)/2], d)
	}
}
