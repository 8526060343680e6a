/*
Package recordset implements the self-describing record sets of steps (c) and
(d) of the method: at the primary site the data mover reads the timestamped
updates that one storage subsystem has accumulated in its sidefile and packs
them, together with the information needed to place them in time, into a
record set (step c), which is then sent to the secondary site (step d). The
secondary site never asks the primary anything about a record set: everything
it needs to fit the set into a consistency group and to apply its updates in
order is in the set itself. That is what "self-describing" means here, and it
is why the encoding carries its own lengths, sequence numbers, timestamps and
checksums.

A RecordSet is what one subsystem contributed to one time-interval group. Its
Seq numbers the sets of that subsystem contiguously from 1, so the secondary
can tell a lost set from a late one. Its Horizon promises that no later update
of the subsystem has a timestamp at or before it; the secondary forms a
consistency group up to the smallest horizon over all subsystems of the
session, which is only safe because of that promise. The updates in a set are
in strictly increasing timestamp order, and none is later than the horizon.

# Wire format

One record set is encoded as a header, a payload and a payload checksum. The
encoding does not delimit itself from whatever follows it: the transport or
journal that carries it must say where it ends, although FrameSize can work
out the total length from the first PrefixSize bytes. On the link a record
set may travel compressed (package transport, FeatureZstd): that wraps this
encoding, byte for byte, whose checksums are checked after it is decoded;
the journal always holds this encoding. All integers are
big-endian and unsigned unless marked otherwise. Offsets are in bytes from the
start of the record set.

	off   size   field
	0     4      magic "DXRS" (0x44 0x58 0x52 0x53)
	4     2      version: 1, or 2 when the set holds a marker (see Markers)
	6     2      flags, currently 0; a decoder rejects any flag it does not know
	8     4      header length H: bytes from offset 0 through the header CRC
	12    4      payload length P
	16    8      record-set sequence number (per subsystem, from 1; 0 is invalid)
	24    8      time-interval group number
	32    8      read time, int64 nanoseconds since the Unix epoch
	40    8      horizon, int64 nanoseconds
	48    8      lowest update timestamp, int64 (0 if there are no updates)
	56    8      highest update timestamp, int64 (0 if there are no updates)
	64    4      record count N
	68    2      volume-table count V
	70    2      session id length S (1..255)
	72    2      subsystem id length U (1..255)
	74    S      session id bytes
	74+S  U      subsystem id bytes
	...          volume table: V entries
	...   40*N   record infos: N entries
	H-4   4      CRC-32C (Castagnoli) of bytes [0, H-4)
	H     P      payload
	H+P   4      CRC-32C (Castagnoli) of bytes [H, H+P)

The first 16 bytes (magic through payload length) are the prefix: they are
enough to decide whether the set is acceptable in size before reading or
allocating anything else, and their layout will stay the same in every
version so that a reader can always find the end of a set it cannot parse.

Each volume-table entry is

	off   size   field
	0     2      name length L (1..255)
	2     L      volume name bytes

The table lists the distinct volume names of the updates exactly once each, in
the order in which the updates first use them. Names are stored once rather
than per record because a set usually holds many small updates to few
volumes. Because the order is fixed, a record set has exactly one encoding,
which lets both sides compare, deduplicate and checksum sets byte for byte.

Each record info is 40 bytes:

	off   size   field
	0     4      volume index into the volume table (0-based)
	4     1      kind: 1 write, 2 zeroes, 3 trim, 4 copy, 5 marker
	5     3      reserved, zero
	8     8      offset in bytes within the volume
	16    8      length in bytes (offset+length must not overflow 64 bits)
	24    8      timestamp, int64 nanoseconds from the common timer
	32    8      update sequence number

The payload is the data of the records whose kind carries data (write, copy
and marker), in record order, concatenated with nothing in between; each such
record contributes exactly its length, and records of other kinds contribute
nothing, so the lengths of the data-carrying records add up to P. Keeping the
data out of the record infos keeps the header small and lets a receiver check
and act on the header (for example, discard a duplicate) without touching the
payload.

The header and the payload have separate checksums so that a header can be
trusted, and its lengths used, before the payload has been read or checked.
CRC-32C is used because it has hardware support on common CPUs and detects
every single-bit error and every burst of up to 32 bits.

A decoder rejects anything an encoder would not have produced: wrong magic,
an unknown version or flag, lengths that disagree with each other or with the
bytes given, a checksum mismatch, bytes left over or missing anywhere, a
volume index out of range, a volume-table entry that is unused, duplicated or
out of first-use order, a nonzero reserved byte, an unknown kind, timestamps
that are not strictly increasing or that are later than the horizon, lowest
and highest timestamps that are not those of the first and last records, and
an offset+length that overflows.

# Markers

A marker record (kind 5) changes no byte of its volume: it announces a change
of the volume's pair state, and its timestamp, taken from the common timer
under the same ordering lock as the writes, places that change exactly among
the volume's updates. The secondary learns from markers which volumes have a
consistent copy, and holds a resync's copies until the resync is complete so
that its volumes never show a mix of old and new regions. A marker's offset
is 0 and its length is 16; its 16 payload bytes are

	off   size   field
	0     1      state: 1 first copy begins, 2 resync begins, 3 copy or
	             resync ends, 4 suspended, 5 deleted
	1     1      flags: bit 0 (only with state 2) the operator accepted an
	             inconsistent secondary during this resync; other bits zero
	2     6      reserved, zero
	8     8      bytes the copy or resync will send at most (states 1 and 2;
	             0 otherwise)

For example, a copy-end marker is the payload 03 00 00 00 00 00 00 00 00 00
00 00 00 00 00 00, and a resync of 3 MiB that must not leave the secondary
inconsistent is 02 00 00 00 00 00 00 00 00 00 00 00 00 30 00 00.
testdata/golden-v2-marker.hex pins a whole set with markers.

# Versions

The version is bumped for any change to the layout above, including the use
of a new flag or kind; the magic, version, flags and the two length fields
keep their positions in every version. Version 2 added the marker kind and
differs from version 1 in nothing else; an encoder writes version 2 exactly
when the set holds a marker, so every set has one encoding, sets without
markers still read on a version 1 receiver, and journals written before
markers existed still replay. A decoder rejects a marker in a version 1 set
and a version 2 set without one. There is no negotiation: a decoder
that sees a version it does not know fails with ErrVersion and the operator
upgrades the secondary site first.
*/
package recordset
