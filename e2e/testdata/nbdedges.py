"""Requests at and past the end of an export, of length zero, with flags a
command does not take, at unaligned offsets, and from many connections at
once, over libnbd with its own checks off so that the server answers them.

    nbdedges.py URI --conns N --scratch OFF

The export's last 64 KiB are left alone: every request there must fail,
whole. [OFF, OFF+N*64 KiB) is written, each connection its own 64 KiB in
odd-sized pieces at odd offsets, all in flight at once, then flushed from
one connection only (the export says a flush covers every connection's
writes), and read back from another. It exits non-zero, saying why, at the
first reply that is not what the protocol asks for; "done" once all were.
"""

import argparse
import errno
import sys

import nbd


def expect(what, want, fn):
    try:
        fn()
    except nbd.Error as e:
        if e.errnum != want:
            sys.exit("%s: failed with %s (errno %s), want errno %s" % (what, e.string, e.errnum, want))
        return
    if want:
        sys.exit("%s: succeeded, want errno %s" % (what, want))


def piece(conn, i, n):
    unit = b"c%02dp%03d" % (conn, i)
    return (unit * (n // len(unit) + 1))[:n]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("uri")
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--scratch", type=int, required=True)
    a = p.parse_args()

    h = nbd.NBD()
    h.set_strict_mode(0)
    h.connect_uri(a.uri)
    size = h.get_size()
    if not h.can_multi_conn():
        sys.exit("the export does not say a flush covers every connection")

    ENOSPC, EINVAL = errno.ENOSPC, errno.EINVAL
    FUA, NO_HOLE = nbd.CMD_FLAG_FUA, nbd.CMD_FLAG_NO_HOLE
    # Past the end: ENOSPC for writes and zeroes, EINVAL for reads and
    # trims (the spec's SHOULDs; qemu-nbd and nbdkit answer so).
    expect("write straddling the end", ENOSPC, lambda: h.pwrite(b"x" * 4096, size - 2048))
    expect("FUA write straddling the end", ENOSPC, lambda: h.pwrite(b"x" * 4096, size - 2048, FUA))
    expect("1-byte write at the end", ENOSPC, lambda: h.pwrite(b"x", size))
    expect("write far past the end", ENOSPC, lambda: h.pwrite(b"x" * 512, 1 << 62))
    expect("write whose end wraps 2^64", ENOSPC, lambda: h.pwrite(b"x" * 512, (1 << 64) - 256))
    expect("zeroes straddling the end", ENOSPC, lambda: h.zero(4096, size - 1))
    expect("NO_HOLE zeroes straddling the end", ENOSPC, lambda: h.zero(65536, size - 4096, NO_HOLE))
    expect("trim straddling the end", EINVAL, lambda: h.trim(2, size - 1))
    expect("read straddling the end", EINVAL, lambda: h.pread(2, size - 1))
    # Flags a command does not take.
    expect("write with NO_HOLE", EINVAL, lambda: h.pwrite(b"x" * 512, size - 4096, NO_HOLE))
    expect("trim with NO_HOLE", EINVAL, lambda: h.trim(512, size - 4096, NO_HOLE))
    expect("zeroes with FAST_ZERO, not negotiated", EINVAL, lambda: h.zero(512, size - 4096, nbd.CMD_FLAG_FAST_ZERO))
    # Length zero: nothing to do, inside the export or at its end.
    expect("empty write at the end", 0, lambda: h.pwrite(b"", size))
    expect("empty FUA write", 0, lambda: h.pwrite(b"", size - 4096, FUA))
    expect("empty trim", 0, lambda: h.trim(0, size - 4096))
    expect("empty zeroes", 0, lambda: h.zero(0, size))
    expect("empty read", 0, lambda: h.pread(0, size))
    # The connection is still in step after every refusal.
    expect("read of the last 64 KiB", 0, lambda: h.pread(65536, size - 65536))

    # Many connections at once, odd pieces at odd offsets.
    hs = [h]
    for _ in range(a.conns - 1):
        g = nbd.NBD()
        g.connect_uri(a.uri)
        hs.append(g)
    want = bytearray(a.conns * 65536)
    pending = []
    for c, g in enumerate(hs):
        base, i, at = a.scratch + c * 65536, 0, 0
        while at < 65536:
            n = min(65536 - at, 1 + (i * 7919 + c * 104729) % 5003)
            data = piece(c, i, n)
            want[c * 65536 + at:c * 65536 + at + n] = data
            buf = nbd.Buffer.from_bytearray(bytearray(data))
            pending.append((g, g.aio_pwrite(buf, base + at), buf))
            at, i = at + n, i + 1
    for g, cookie, _ in pending:
        while not g.aio_command_completed(cookie):
            g.poll(-1)
    hs[0].flush()
    got = hs[-1].pread(len(want), a.scratch)
    if got != want:
        i = next(i for i in range(len(want)) if got[i] != want[i])
        sys.exit("read back at %d: %r, written %r" % (a.scratch + i, bytes(got[i:i + 16]), bytes(want[i:i + 16])))
    for g in hs:
        g.shutdown()
    print("done", flush=True)


if __name__ == "__main__":
    main()
