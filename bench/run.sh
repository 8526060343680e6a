#!/usr/bin/env bash
# Duplex's benchmark suite and fault campaign, in one command:
#
#   bench/run.sh                 # full run: about 25 minutes on 2 cores
#   QUICK=1 bench/run.sh         # short runtimes: proves everything works (~4 minutes)
#
# Environment:
#   ROUNDS=N         write-cost rounds, each job on nbdkit then on Duplex (default 3)
#   QUICK=1          short runtimes, 256 MiB volumes, 2 fault trials per kind
#   SECTIONS=a,b     perf sections to run: primary,write,lag,apply,memory,scale (default all)
#   FAULT_TRIALS=N   trials per fault kind (default 10; QUICK: 2); 0 skips the campaign
#   COMPARE=BIN      primary and lag sections: a second duplex build run in the same rounds
#
# It installs fio and nbdkit with apt-get when missing, builds the duplex
# binary and the bench programs into bench/out/, runs bench/cmd/perf (which
# writes each session's config with free loopback ports and a 64 MiB sidefile
# limit under bench/out/) and then bench/faults. The report, Markdown, goes to
# the terminal and to bench/out/results-<UTC time>.md. Exit status 1 if a
# measurement failed or the campaign found a violation, a loss or a stall.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v fio >/dev/null || need+=(fio)
command -v nbdkit >/dev/null || need+=(nbdkit)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing ${need[*]}" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

out=bench/out
mkdir -p "$out"
go build -o "$out/duplex" ./cmd/duplex
go build -o "$out/perf" ./bench/cmd/perf
go build -o "$out/faults" ./bench/faults

rounds=${ROUNDS:-3}
quick=${QUICK:-0}
sections=${SECTIONS:-primary,write,lag,apply,memory,scale}
if [ "$quick" = 1 ]; then
  trials=${FAULT_TRIALS:-2}
  quickflag=-quick
else
  trials=${FAULT_TRIALS:-10}
  quickflag=
fi

report="$out/results-$(date -u +%Y%m%dT%H%M%SZ).md"
rm -rf "$out/faults-work"
set +e
{
  status=0
  echo "Command: ROUNDS=$rounds QUICK=$quick SECTIONS=$sections FAULT_TRIALS=$trials ${COMPARE:+COMPARE=$COMPARE }bench/run.sh"
  echo
  "$out/perf" -duplex "$out/duplex" -out "$out" -rounds "$rounds" -sections "$sections" $quickflag ${COMPARE:+-compare "$COMPARE"} || status=1
  if [ "$trials" -gt 0 ]; then
    echo
    echo "## Fault campaign"
    echo
    echo "\`go run ./bench/faults -trials $trials -kind all\` (here: $out/faults -duplex $out/duplex), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo '```'
    "$out/faults" -duplex "$out/duplex" -dir "$out/faults-work" -trials "$trials" -kind all || status=1
    echo '```'
    echo
    echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  fi
  exit $status
} 2>&1 | tee "$report"
status=${PIPESTATUS[0]}
set -e
echo
echo "report written to $report"
exit "$status"
