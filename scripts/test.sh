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
command -v chromium  >/dev/null || need+=(chromium)
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
go test -race -timeout 30m ./...

# Every decoder gets a short fuzzing pass on top of its seed corpus. A crash
# is written to the package's testdata/fuzz and then fails the plain rerun; a
# fuzzing engine that merely timed out on a loaded machine does not.
fuzztime=${FUZZTIME:-15s}
while read -r pkg target; do
  if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$pkg"; then
    echo "fuzzing $pkg $target stopped early; rerunning its corpus"
    go test -run "^${target}\$" "./$pkg"
  fi
done < <(grep -rhoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . -l | while read -r f; do
  for t in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$f" | sed 's/^func //'); do
    echo "$(dirname "$f" | sed 's|^\./||') $t"
  done
done)
