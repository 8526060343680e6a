package fiojson

import (
	"math"
	"testing"
)

// A trimmed fio 3.33 report, preceded by the line fio's nbd engine prints on
// stdout before the JSON.
const sample = `fio: connected to NBD server
{
  "fio version" : "fio-3.33",
  "jobs" : [
    {
      "jobname" : "randwrite-4k-qd16",
      "error" : 0,
      "read" : {"io_bytes" : 0, "bw_bytes" : 0, "iops" : 0.0, "runtime" : 0, "clat_ns" : {}},
      "write" : {
        "io_bytes" : 255270912, "bw_bytes" : 127604107, "iops" : 31153.346653, "runtime" : 2002,
        "clat_ns" : {"percentile" : {"50.000000" : 403456, "99.000000" : 3031040}}
      }
    },
    {
      "jobname" : "randread-4k-qd16",
      "error" : 0,
      "read" : {"io_bytes" : 4096000, "bw_bytes" : 2048000, "iops" : 500.0, "runtime" : 2000,
        "clat_ns" : {"percentile" : {"50.000000" : 1000000, "99.000000" : 2000000}}},
      "write" : {"io_bytes" : 0, "bw_bytes" : 0, "iops" : 0.0, "runtime" : 0, "clat_ns" : {}}
    }
  ]
}`

func TestParse(t *testing.T) {
	jobs, err := Parse([]byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 {
		t.Fatalf("%d jobs, want 2", len(jobs))
	}
	w, r := jobs[0], jobs[1]
	if w.Name != "randwrite-4k-qd16" || w.Dir != "write" || math.Abs(w.IOPS-31153.35) > 0.01 ||
		math.Abs(w.MiBps()-121.69) > 0.01 || w.Runtime != 2.002 || w.P50 != 403456e-9 || w.P99 != 3031040e-9 {
		t.Errorf("write job: %+v", w)
	}
	if r.Dir != "read" || r.IOPS != 500 || r.P99 != 0.002 {
		t.Errorf("read job: %+v", r)
	}
	if _, err := Parse([]byte("fio: error")); err == nil {
		t.Error("output without JSON parsed")
	}
}
