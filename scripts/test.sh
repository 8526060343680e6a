#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, then runs them
# all: vet, the race-enabled test suite, and a short fuzzing pass of every
# decoder.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v go >/dev/null || export PATH="$PATH:/usr/local/go/bin"

need=()
command -v qemu-io   >/dev/null || need+=(qemu-utils)
command -v nbdinfo   >/dev/null || need+=(libnbd-bin)
command -v nbdkit    >/dev/null || need+=(nbdkit)
command -v fio       >/dev/null || need+=(fio)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v losetup   >/dev/null || need+=(util-linux)
# ip netns: the coupled sessions' hosts as network namespaces (e2e).
command -v ip        >/dev/null || need+=(iproute2)
command -v chromium  >/dev/null || need+=(chromium)
# libnbd's Python bindings, for the system python only; -I keeps the Go
# package nbd in this directory from passing for them.
/usr/bin/python3 -I -c 'import nbd' 2>/dev/null || need+=(python3-libnbd)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi

go mod download
go vet ./...
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt needed:"; echo "$unformatted"; exit 1
fi
# Screenshots of the status page, kept for the run's artifacts.
export DUPLEX_ARTIFACTS="${DUPLEX_ARTIFACTS:-$PWD/artifacts}"

# Every decoder gets a short fuzzing pass on top of its seed corpus. A crash
# is written to the package's testdata/fuzz and then fails the plain rerun; a
# fuzzing engine that merely timed out on a loaded machine does not. Each
# package's instrumented test binary is built once for all its targets.
fuzztime=${FUZZTIME:-15s}
fuzz_targets() {
  grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]+' . | while read -r f; do
    for t in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed 's/^func //'); do
      echo "$(dirname "$f" | sed 's|^\./||') $t"
    done
  done | sort
}
fuzz_all() {
  local bindir cache module pkg target bin status=0
  bindir=$(mktemp -d)
  cache="$(go env GOCACHE)/fuzz"
  module=$(go list -m)
  while read -r pkg target; do
    echo "=== fuzz $pkg $target ($fuzztime)"
    bin="$bindir/$(echo "$pkg" | tr / _).test"
    if [ ! -x "$bin" ] && ! go test -c -fuzz . -o "$bin" "./$pkg"; then
      status=1; continue
    fi
    if ! (cd "$pkg" && "$bin" -test.run '^$' -test.fuzz "^${target}\$" -test.fuzztime "$fuzztime" \
        -test.fuzzcachedir "$cache/$module/$pkg"); then
      echo "fuzzing $pkg $target stopped early; rerunning its corpus"
      go test -run "^${target}\$" "./$pkg" || status=1
    fi
  done < <(fuzz_targets)
  rm -rf "$bindir"
  return $status
}

# The fuzzing pass runs beside the test suite at the lowest priority: the
# suite spends most of its time waiting on timers, links and processes, and
# the fuzzers take the cores it leaves idle without delaying it.
fuzzlog=$(mktemp)
(renice -n 19 -p "$BASHPID" >/dev/null; fuzz_all) >"$fuzzlog" 2>&1 &
fuzzpid=$!
suite=0
go test -race -timeout 30m ./... || suite=$?
fuzz=0
wait "$fuzzpid" || fuzz=$?
echo "--- fuzzing"
cat "$fuzzlog"
rm -f "$fuzzlog"
[ "$suite" -eq 0 ] || { echo "go test failed"; exit "$suite"; }
[ "$fuzz" -eq 0 ] || { echo "fuzzing failed"; exit "$fuzz"; }
