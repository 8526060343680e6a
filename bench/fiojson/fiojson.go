// Package fiojson reads the results of fio --output-format=json, so that the
// benchmark scripts need neither jq nor python.
package fiojson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// Job is one job's figures for the direction it did most of.
type Job struct {
	Name    string
	Dir     string  // "read" or "write"
	IOPS    float64 // operations per second
	BW      float64 // bytes per second
	Bytes   int64   // bytes moved
	Runtime float64 // seconds
	P50     float64 // completion latency, seconds
	P99     float64
	Error   int // fio's error code for the job (0: none)
}

// MiBps is the bandwidth in MiB/s.
func (j Job) MiBps() float64 { return j.BW / (1 << 20) }

type dirStats struct {
	IOBytes  int64   `json:"io_bytes"`
	BWBytes  float64 `json:"bw_bytes"`
	IOPS     float64 `json:"iops"`
	Runtime  float64 `json:"runtime"` // ms
	TotalIOs int64   `json:"total_ios"`
	ClatNS   struct {
		Percentile map[string]float64 `json:"percentile"`
	} `json:"clat_ns"`
}

type report struct {
	Jobs []struct {
		Name  string   `json:"jobname"`
		Error int      `json:"error"`
		Read  dirStats `json:"read"`
		Write dirStats `json:"write"`
	} `json:"jobs"`
}

// Parse reads fio's JSON output. Text before the JSON object (some engines,
// nbd among them, print a line on stdout before it) is skipped.
func Parse(data []byte) ([]Job, error) {
	i := bytes.IndexByte(data, '{')
	if i < 0 {
		return nil, errors.New("fio output holds no JSON object")
	}
	var r report
	if err := json.Unmarshal(data[i:], &r); err != nil {
		return nil, fmt.Errorf("fio JSON: %w", err)
	}
	var out []Job
	for _, j := range r.Jobs {
		d, name := j.Write, "write"
		if j.Read.IOBytes > j.Write.IOBytes {
			d, name = j.Read, "read"
		}
		out = append(out, Job{Name: j.Name, Dir: name, IOPS: d.IOPS, BW: d.BWBytes, Bytes: d.IOBytes,
			Runtime: d.Runtime / 1000, P50: pct(d.ClatNS.Percentile, 50), P99: pct(d.ClatNS.Percentile, 99), Error: j.Error})
	}
	return out, nil
}

func pct(m map[string]float64, p float64) float64 {
	for k, v := range m {
		if f, err := strconv.ParseFloat(k, 64); err == nil && f == p {
			return v / 1e9
		}
	}
	return 0
}

// ParseFile reads fio's JSON output from a file.
func ParseFile(path string) ([]Job, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	jobs, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return jobs, nil
}
