"""Overlapping writes, zeroes, trims and flushes in flight at once, over libnbd.

    nbdmix.py URI... --start OFF --span LEN [--rounds R] [--depth D] [--seed S]
                     [--final FILE] [--disjoint]

One connection per URI (several may name one export, which says it can take
many). Each round issues D commands, spread over the connections and all in
flight at once, then waits for every reply: writes of a pattern naming the
round and command, at unaligned offsets and of unaligned lengths (some with
FUA), WRITE_ZEROES with and without NO_HOLE (some with FUA), TRIMs and
FLUSHes, all within [OFF, OFF+LEN) of their export, so that they overlap one
another. It prints "acked R" once every command of round R is acknowledged
and exits non-zero at the first error. With --final, once every round is
acknowledged it reads [OFF, OFF+LEN) of the first URI's export back, with
nothing in flight, into FILE: what the client last saw acknowledged there.

With --disjoint, every URI names one export, and the commands of a round
each keep to a slot of their own (the span cut in D), so that what the span
holds after each round is known: the script keeps it, reads the span back
after every round, and exits non-zero at the first byte that differs.
"""

import argparse
import random
import sys

import nbd


def pattern(rnd, cmd, n):
    unit = b"r%05dc%03d" % (rnd, cmd)
    return bytearray((unit * (n // len(unit) + 1))[:n])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("uris", nargs="+")
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--span", type=int, required=True)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--depth", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--final")
    p.add_argument("--disjoint", action="store_true")
    a = p.parse_args()
    rng = random.Random(a.seed)

    hs = []
    for uri in a.uris:
        h = nbd.NBD()
        h.connect_uri(uri)
        if not (h.can_fua() and h.can_zero() and h.can_trim() and h.can_flush()):
            sys.exit("%s: the export does not advertise FUA, WRITE_ZEROES, TRIM and FLUSH" % uri)
        hs.append(h)
    print("ready", flush=True)
    model = bytearray(hs[0].pread(a.span, a.start)) if a.disjoint else None
    slot = a.span // a.depth

    for rnd in range(a.rounds):
        pending = []  # (handle, cookie, what, buffer kept alive)
        for cmd in range(a.depth):
            h = hs[cmd % len(hs)]
            kind = rng.random()
            if a.disjoint:
                n = rng.randint(1, slot)
                off = a.start + cmd * slot + rng.randint(0, slot - n)
            else:
                # Mostly short, now and then long enough to straddle much
                # of the span; never past it.
                n = rng.randint(1, 64 << 10) if rng.random() < 0.85 else rng.randint(64 << 10, a.span)
                off = a.start + rng.randint(0, a.span - n)
            fua = nbd.CMD_FLAG_FUA if rng.random() < 0.25 else 0
            if kind < 0.55:
                buf = nbd.Buffer.from_bytearray(pattern(rnd, cmd, n))
                c = h.aio_pwrite(buf, off, flags=fua)
                if model is not None:
                    model[off - a.start:off - a.start + n] = pattern(rnd, cmd, n)
                what = "write [%d, +%d) flags %d" % (off, n, fua)
            elif kind < 0.75:
                buf = None
                flags = fua | (nbd.CMD_FLAG_NO_HOLE if rng.random() < 0.5 else 0)
                c = h.aio_zero(n, off, flags=flags)
                if model is not None:
                    model[off - a.start:off - a.start + n] = bytes(n)
                what = "zero [%d, +%d) flags %d" % (off, n, flags)
            elif kind < 0.93:
                buf = None
                c = h.aio_trim(n, off, flags=fua)
                if model is not None:
                    # The primary's trim reads back as zeroes.
                    model[off - a.start:off - a.start + n] = bytes(n)
                what = "trim [%d, +%d) flags %d" % (off, n, fua)
            else:
                buf = None
                c = h.aio_flush()
                what = "flush"
            pending.append((h, c, what, buf))
        for h, c, what, _ in pending:
            while True:
                try:
                    if h.aio_command_completed(c):
                        break
                except nbd.Error as e:
                    sys.exit("round %d: %s failed: %s" % (rnd, what, e))
                h.poll(-1)
        if model is not None:
            got = hs[0].pread(a.span, a.start)
            if got != model:
                i = next(i for i in range(a.span) if got[i] != model[i])
                sys.exit("round %d: read back at %d: %r, written %r" % (rnd, a.start + i, bytes(got[i:i + 16]), bytes(model[i:i + 16])))
        print("acked", rnd, flush=True)

    if a.final:
        got = hs[0].pread(a.span, a.start)
        with open(a.final, "wb") as f:
            f.write(got)
    for h in hs:
        h.shutdown()
    print("done", flush=True)


if __name__ == "__main__":
    main()
