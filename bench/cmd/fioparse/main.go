// Command fioparse prints the figures of fio --output-format=json files, one
// line per job: file, job, direction, IOPS, MiB/s, p50 and p99 completion
// latency in ms. It is how shell scripts read fio without jq.
//
//	go run ./bench/cmd/fioparse out/*.json
package main

import (
	"fmt"
	"os"

	"duplex/bench/fiojson"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: fioparse FILE.json...")
		os.Exit(2)
	}
	code := 0
	fmt.Printf("%-30s %-24s %-5s %10s %9s %9s %9s\n", "file", "job", "dir", "IOPS", "MiB/s", "p50 ms", "p99 ms")
	for _, path := range os.Args[1:] {
		jobs, err := fiojson.ParseFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fioparse:", err)
			code = 1
			continue
		}
		for _, j := range jobs {
			fmt.Printf("%-30s %-24s %-5s %10.0f %9.1f %9.3f %9.3f\n", path, j.Name, j.Dir, j.IOPS, j.MiBps(), j.P50*1e3, j.P99*1e3)
		}
	}
	os.Exit(code)
}
