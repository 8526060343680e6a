"""A dependent-write client over libnbd.

It writes the block format of the Go package workload (workload/workload.go),
so that package's checker can tell whether a copy holds a prefix of the
acknowledged writes: each 4 KiB block names its own write (client, counter,
volume, block) and two writes it depends on, the last one any client saw
acknowledged before it was issued and the client's own previous one.

    depwrite.py HOST:PORT EXPORT... [--clients N] [--blocks B] [--seed S]

Each client is a thread with its own connection to every export; it owns a
disjoint share of every volume's blocks and waits for each write's reply
before it issues the next. It prints "ready" once every client is connected,
then "acked N" every 50 ms, N the writes acknowledged so far; the run ends on
SIGTERM (or at the first failed write) and prints the number of acknowledged
writes.
"""

import argparse
import random
import signal
import struct
import sys
import threading

import nbd

BLOCK = 4096
MAGIC = 0x44574B4C
HEADER = 4 + 3 * 20  # magic, then three refs; the header's CRC-32C follows
M64 = (1 << 64) - 1

CRC_TABLE = []
for n in range(256):
    for _ in range(8):
        n = (n >> 1) ^ 0x82F63B78 if n & 1 else n >> 1
    CRC_TABLE.append(n)


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc = CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def encode(me, deps):
    """A block as workload.Encode makes it; a ref is (client, counter, volume, block)."""
    head = struct.pack(">I", MAGIC) + b"".join(struct.pack(">IQII", *r) for r in (me, *deps))
    # The body's words (workload.word): a hash of (client, counter) above,
    # the word's offset below, so a torn block shows.
    x = ((me[0] << 48) ^ (me[1] * 0x9E3779B97F4A7C15)) & M64
    x ^= x >> 31
    x = (x * 0x94D049BB133111EB) & M64 & ~0xFFFF
    words = (BLOCK - HEADER - 4) // 8
    body = struct.pack("<%dQ" % words, *(x | 8 * i for i in range(words)))
    block = head + struct.pack(">I", crc32c(head)) + body
    return block + bytes(BLOCK - len(block))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("addr")
    p.add_argument("exports", nargs="+")
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--blocks", type=int, required=True, help="blocks per volume")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    host, _, port = a.addr.rpartition(":")
    per = a.blocks // a.clients

    stop = threading.Event()
    lock = threading.Lock()
    last = [(0, 0, 0, 0)]  # the last write seen acknowledged, by any client
    acked = [0]
    errors = []
    connected = []

    def client(c):
        rng = random.Random(a.seed * 1000 + c)
        handles = []
        try:
            for name in a.exports:
                h = nbd.NBD()
                h.set_export_name(name)
                h.connect_tcp(host, port)
                handles.append(h)
            connected.append(c)
            own = (0, 0, 0, 0)
            counter = 0
            while not stop.is_set():
                counter += 1
                vol = rng.randrange(len(handles))
                me = (c + 1, counter, vol, c * per + rng.randrange(per))
                buf = encode(me, (last[0], own))
                handles[vol].pwrite(buf, me[3] * BLOCK)
                own = me
                with lock:
                    last[0] = me
                    acked[0] += 1
        except nbd.Error as e:
            errors.append("client %d: %s" % (c + 1, e))
            stop.set()
        finally:
            for h in handles:
                try:
                    h.shutdown()
                except nbd.Error:
                    pass  # the server is gone

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threads = [threading.Thread(target=client, args=(c,)) for c in range(a.clients)]
    for t in threads:
        t.start()
    ready = False
    while any(t.is_alive() for t in threads):
        if not ready and len(connected) == a.clients:
            print("ready", flush=True)
            ready = True
        elif ready:
            with lock:
                n = acked[0]
            print("acked %d" % n, flush=True)
        stop.wait(0.05)
    for t in threads:
        t.join()
    print(acked[0])
    for e in errors:
        print(e, file=sys.stderr)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
