"""A slow reader over libnbd: one connection, a block at a time, with pauses.

    readview.py HOST:PORT EXPORT OUT --blocks B [--burst N] [--pause S]

It reads blocks 0 to B-1 (4 KiB each) of EXPORT in order over a single
libnbd handle, sleeping S seconds after every N blocks, so the read spans
seconds while the server changes the volume under it, and writes what it
read to the file OUT. It prints the seconds the read took and whether the
server advertised multi-conn, which a server whose connections each read a
state of their own must not.
"""

import argparse
import time

import nbd

BLOCK = 4096


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("export")
    p.add_argument("out")
    p.add_argument("--blocks", type=int, required=True)
    p.add_argument("--burst", type=int, default=16)
    p.add_argument("--pause", type=float, default=0.1)
    a = p.parse_args()
    host, _, port = a.addr.rpartition(":")

    h = nbd.NBD()
    h.set_export_name(a.export)
    h.connect_tcp(host, port)
    start = time.monotonic()
    with open(a.out, "wb") as f:
        for b in range(a.blocks):
            if b and b % a.burst == 0:
                time.sleep(a.pause)
            f.write(h.pread(BLOCK, b * BLOCK))
    took = time.monotonic() - start
    multi = h.can_multi_conn()
    h.shutdown()
    print("%.3f %s" % (took, "multi-conn" if multi else "single-conn"))


if __name__ == "__main__":
    main()
