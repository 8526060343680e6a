/*
Package journal is a durable, append-only log of opaque records, each
identified by a uint64 index; each record's index is one more than the
previous record's.

It is step (g) of the method: at the secondary site each consistency group
is journaled before it is shadowed. The caller appends the group as one
record, with the consistency-group number as its index, calls Sync, and only
then applies the group to the secondary volumes. A crash at any moment
therefore leaves the secondary at a group boundary: a group whose record is
not wholly on disk was never applied and is dropped on recovery as a torn
tail, and a group that was being applied is in the journal in full, so
replaying the journal from the last group known to be applied finishes it.
Once the groups of a segment are applied, Release gives its space back.

The caller's side of that, in outline:

	j, err := journal.Open(dir, journal.Options{})
	// Finish what a crash interrupted. applied is kept by the caller,
	// durably, after each group is shadowed; if j.FirstIndex() > applied+1
	// the groups in between are gone and the volumes need a full copy.
	err = j.Replay(applied, func(g uint64, data []byte) error { return shadow(g, data) })
	for each consistency group g, data {
		err = j.Append(g, data) // g == j.LastIndex()+1
		err = j.Sync()          // only now may the group touch the volumes
		err = shadow(g, data)
		applied = g
		err = j.Release(applied) // from time to time
	}

A failed fsync, a failed write or a failed segment creation makes the Journal
refuse all further writes, since what is on disk is then unknown (after a
failed fsync the kernel may have dropped the pages it could not write, so a
retried fsync that succeeds would prove nothing); the caller must stop
acknowledging, Close it and Open it again once the disk works, which recovers
from whatever reached the disk. A failed fsync also truncates the active
segment back to what the last successful one covered (a new segment, or one
whose name the directory's fsync could not make durable, to nothing): pages
the kernel could not write may be left clean in the page cache, and an Open
before a reboot would read the records in them as journaled. Open does not
count on that truncation, which a process killed in the failed fsync never
makes, and which no one makes when the failing writeback is an Open's own
(of records a killed process appended and no Sync covered): it reads the
last segment from the device, not the page cache (see Recovery). Other
errors, such as an Append out of sequence, change nothing. Every file
operation goes through Options.FS, so tests inject these faults with a
disk.Injector.

# Space

The active segment is never released, and the segment before it stays until
its records are released; each can grow past SegmentSize by up to one record.
A journal therefore needs room for two segments and two of its largest records
as they lie on the disk (Needs): a record takes its header and padding
besides its data, and one of more than 64 KiB up to 6.3 % more for its
gaps (RecordSpace, which charges a small record none). A released segment kept as the spare (see Recycling) is space the
next segment takes instead of new space, and is kept only while the file
system has twice that room free. With Options.LargestRecord set, Open checks that the file system has
that much free, counting the segments it holds but the active one, and
refuses with the numbers otherwise (CheckRoom repeats the check for a caller
that will release only the records up to a given index); and unless SegmentSize is set it sizes
segments to fit: a quarter of the room left after two records, between MinSegmentSize (1 MiB)
and DefaultSegmentSize (64 MiB). A journal on a 64 MiB file system whose
records reach 16 MiB gets 8 MiB segments and needs 50 MiB; with records of up
to 256 MiB it is refused.

# Directory layout

A journal is a directory holding segment files and a file named LOCK, which
Open holds an exclusive flock on so two processes never append to one
journal. Each segment holds a contiguous run of records and is named after
the index of its first record, as 16 lowercase hexadecimal digits and the
extension ".seg" (Go format "%016x.seg"): 0000000000000001.seg holds records
from 1, and the segment after it starts with the record after its last. A
file named "spare" is a released segment's file waiting to be the next
segment (see Recycling). Other files in the directory are ignored.

Only the newest segment, the active one, is written to. Append rolls to a new
segment once the active one has reached Options.SegmentSize, and fsyncs the
old segment and the directory before creating the new one, so every segment
but the last is always complete on disk.

# Segment format

All integers are big-endian and unsigned. Offsets are in bytes from the
start of the file. A segment starts with a 24-byte header:

	off  size  field
	0    4     magic "DXJL" (0x44 0x58 0x4a 0x4c)
	4    4     format version, 3
	8    8     index of the first record; always equal to the file name
	16   8     salt: random, drawn anew for every segment

Records follow the header back to back from offset 24. Each one is either
a record with gaps (below) or:

	off     size    field
	0       4       length L of the data in bytes (0 is allowed)
	4       4       CRC-32C of the segment's salt, the 8 index bytes (offset 8), then the data
	8       8       index
	16      L       data
	16+L    P       P zero bytes, 0 <= P < 8, so that 16+L+P is a multiple of 8

The CRC is the Castagnoli CRC-32 as Go's hash/crc32 computes it with the
crc32.Castagnoli table (reflected, initial value and final XOR 0xffffffff),
so crc32.Checksum(salt||index||data, crc32.MakeTable(crc32.Castagnoli)).
It covers the index as well as the data so that an intact record in the
wrong place, such as a stale block or a misdirected write, fails the
check, and the salt so that a record of the file's earlier life as
another segment (see Recycling), or a copy of one anywhere in the data,
fails it too. It does not cover the length: a wrong length makes the
reader checksum the wrong bytes, which fails just as well. Padding is
written as zeros and not checked on reading.

For example, with the salt 01 02 03 04 05 06 07 08, record 1 with the
three data bytes "abc" is the 24 bytes

	00 00 00 03  a2 c3 51 48  00 00 00 00 00 00 00 01  61 62 63  00 00 00 00 00

# Records with gaps

A record whose first four bytes are ff ff ff ff (a length no record has:
MaxRecord is at most 4 GiB-2) carries zero bytes between pieces of its
data, its gaps, and a table that says where they are:

	off        size    field
	0          4       ff ff ff ff
	4          4       CRC-32C of the salt, the 8 index bytes, the 16+8G bytes from offset 16, then the data
	8          8       index
	16         4       length L of the data in bytes, gaps not counted
	20         4       G, the number of gaps: 1 <= G <= L
	24         4       S, the bytes of all the gaps together
	28         4       zero
	32         8G      the gap table: G entries of
	                     4  the number of data bytes before the gap; each greater than the last, and below L
	                     4  the gap's length in bytes, below 4096 (0 is allowed)
	32+8G      L+S     the data, with each gap's zeros before the data byte its entry names
	32+8G+L+S  P       P zero bytes, 0 <= P < 8, so that L+S+P is a multiple of 8

The data is what the record holds, exactly as in a record without gaps:
Replay returns it without the gaps, and its CRC is over it without them.
The CRC covers the table too, so a damaged table fails it; a table that
does not describe the bytes after it (entries out of order, past L, a
gap too long, lengths that do not add up to S) ends the log as a failed
CRC does. The gaps' bytes are written as zeros and not checked.

Gaps exist for direct writes (below): each lets a large piece of the data
lie on the disk at the place that agrees with where it lies in memory,
modulo the grain of the device's direct I/O (the larger of the memory
and offset alignments statx reports, 512 on most devices), so the write
takes the piece's whole grains from where it lies, a frame received from
the network, rather than from a copy. Append gives every part of at
least 64 KiB of a record of more than 64 KiB a gap before
it, of 0 to grain-1 bytes, where it writes directly; otherwise a record
has no gaps.

# Why records are padded to 8 bytes

Because the header is 24 bytes and every record is padded, every record
starts at an offset that is a multiple of 8, so its first 8 bytes, the length
and CRC, lie in one aligned 8-byte word. Disk sectors (512 or 4096 bytes) and
pages are multiples of 8, so that word never straddles a sector: a torn
write, which devices tear at sector granularity, leaves it either entirely as
written or entirely as it was before (zeros, in a file that is only ever
appended to). A length field is therefore never half new and half stale, and
a reader never takes as a length a number that no writer wrote. That is also
what makes an all-zero length and CRC a reliable sign of space that was never
written, as left by preallocation or by a file system that extended the file
before the data reached the disk. (In a recycled segment what follows the
last record is its earlier life's bytes instead, which the salt tells
from records of this one.) A record with gaps has its length, gap count
and gap bytes at offsets 16 to 28, which a torn write may leave stale
beside a new first word; the CRC covers them, and the reader checks them
against the bytes left in the file before it reads or allocates
anything, so such a record ends the log as a failed CRC does.

# Direct writes

Where the file system takes them (statx reports its direct-I/O alignment;
ext4 and XFS do, tmpfs does not), the active segment is written with
O_DIRECT, unless Options.Buffered is set: one vectored write a record
(one more for every 4 MiB copied), of pieces each a whole number of
grains long at an address that is a
multiple of the grain, from a buffer aligned to 4096 bytes into which the
record's bytes are copied, and from the record's large parts where they
lie (see Records with gaps): only their ends, under a grain each, are
copied. The device reads from there, instead of a copy into the page cache
and its writeback by Sync, and a released segment leaves no cached pages
to drop. The records of a segment are the same either way, but for the
gaps, which only direct writes make; and the file's length differs while
it is the active segment:

  - A record's first direct write starts at the block boundary before
    the end of the last record and rewrites the bytes from there to that
    end exactly as they are (the Journal keeps them in its buffer), so a
    write torn at any sector leaves the synced records as they were.
  - Its last ends at a block boundary, with zeros after the record: the
    active segment's file is up to 4095 bytes longer than its records
    until Close, or the roll to a new segment, truncates it back. A crash
    leaves those zeros; Open drops them as space never written, like any
    torn tail. Every segment but the last is truncated and fsynced before
    its successor is created, so none of them ever has zeros at its end.

A file system that refuses direct writes gets the page cache, without
an error: the format and the recovery do not depend on the way of writing.
So does one that reports a direct-I/O alignment and then refuses a direct
write (EINVAL): the journal says so once (Options.Logger), writes that
record again, whole, through the page cache, and every later one so, in
this segment and the next; the fdatasync of Sync covers them, and what the
direct writes before left in the device's cache, as it did. Open reads the
last segment through the page cache where its direct read is refused.

# Recycling

Release does not remove the oldest released segment when there is no
spare: it renames it to "spare", fsyncs the directory, zeroes the spare's
header and fsyncs the spare. The next segment is then the spare renamed
to the new segment's name and written over from offset 0, as a new file
would be; the first Sync after it fsyncs the directory, as after any new
segment. A segment so made grows within blocks already allocated and
written, so neither its creation nor the removal of the one it was costs
the file system anything (no discard of freed blocks, no allocation), and
Sync, an fdatasync, commits nothing to the file system's journal: the
device's cache flush is left. It is cut to its records before it stops
being the last segment, as a directly written one is.

A crash at any moment leaves one of: the released segment under its own
name, intact (still in the log, released again later); the spare under
its name, its header zeroed or not (Open removes it, unused: nothing in
it is in the log); the spare under the new segment's name with its header
zeroed (the new header never reached the disk: Open removes it, as it does
a last segment whose header is all zeros); or the new segment with its new
header and the records that reached the disk, then what is left of its
earlier life. Those leftovers fail the checksum under the new salt, as
every record does at a torn write into them, so the log ends at the last
record written, as at any torn tail. No record after the new header was
acknowledged unless a Sync covered it and the directory.

# Recovery

Open reads every segment in order and checks every record's CRC and that
indexes are contiguous, within and across segments. In the last segment, the
first record that is incomplete (the file ends inside it, padding included),
that fails its CRC, or whose length exceeds Options.MaxRecord ends the log; a
zero length and CRC, space never written, is the commonest failed CRC. The
segment is truncated there and fsynced. Such a tail can only hold writes that
no Sync covered, so nothing acknowledged is lost, and Replay never sees it.
What Open keeps it makes durable, the last segment and the directory
fsynced, before it returns: a process killed between an Append and its
Sync leaves the record where the next one reads it, though not on the
disk, and the caller takes every record Open reports as written.
The one exception is a record longer than MaxRecord whose CRC holds all the
same: a writer with a larger MaxRecord wrote it, and Open fails rather than
destroy it.

Open reads the last segment, the only one that can hold records no fsync
covered, with O_DIRECT where the file system takes direct I/O aligned to
4096 bytes (the test for direct writes), in aligned blocks: it finds what
the device holds, not what the page cache does. The kernel writes the
file's dirty pages back before a direct read, and a writeback that fails
fails Open. A failed writeback leaves its pages clean but never written,
and the kernel reports the failure once, so a later fsync succeeds over
them: read through the page cache, the records in them would pass every
check and count as journaled until a reboot, and the secondary would
welcome its primary past them. Read from the device they are a torn tail,
dropped as such; no Sync covered them, so none was acknowledged, and the
primary, which keeps every group until it is, sends them again. The hot
path pays nothing for this: no marker is written, and Open reads every
byte of the segments anyway. Two things remain beyond it. A record that a
direct write left in the device's volatile cache, whose cache flush then
failed, reads back from that cache; the fsync Open makes flushes it again,
and the device is taken at its word that it holds what it flushed. And a
file system that takes no direct I/O (tmpfs, with no device behind its
pages; kernels before 6.1, whose statx does not report the alignment) is
read through the page cache, where a process killed in a failed fsync
leaves records the next Open reports until a reboot.

A last segment that is shorter than its header, whose header is all zeros,
or that holds no complete record after truncation, is removed: it was being
created when the crash came. So is a spare.

Anything else is corruption that a crash cannot explain, because earlier
segments were fsynced before the next one existed: a bad record in an
earlier segment, an index that does not follow its predecessor, or a bad
magic number, version or first index. Open then fails with an error wrapping
ErrCorrupt that names the file and offset, and repairs nothing; dropping data
from the middle of the log would silently lose consistency groups.

# Compatibility

The constants marked "part of the on-disk format" must never change. A
change to the format needs a new version number; a reader rejects a version
it does not know as corruption rather than guess.

Version 2 is version 3 without records with gaps: the same header, with
version 2, and records as above but never ff ff ff ff in their first
four bytes (that would be a length). Version 1 is version 2 without the
salt: a 16-byte header (magic, version 1, first index), records from
offset 16, their CRC over index and data. Open reads both; a journal
whose last segment is of version 1 or 2 goes on appending to it in its
version, without gaps, and every segment it then creates is of version
3. A build that knows only versions 1 and 2 refuses a journal holding a
version 3 segment (unsupported version, ErrCorrupt) rather than misread
it: going back to such a build needs the journal's records applied and
released first (a clean stop leaves none it needs), or the journal
removed.
*/
package journal
