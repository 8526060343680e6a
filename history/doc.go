/*
Package history keeps, at the secondary, what it takes to bring every
secondary volume back to any consistency group of a recent window: the
before image of every byte each group overwrites (its undo).

It extends step (g) of the method, shadowing each consistency group in
sequence-consistent order: the secondary holds not only the state after the
last group but, group by group, the states before it, each of them one the
primary volumes had together (the groups are what step (f) formed). The
caller's side of it, for each group g it applies:

	if !log.Has(g) {                                  // a restart applies g again: its undo is kept
		err = log.Capture(header(g), ranges(g), vols) // reads the before images; synced
	}
	apply(g)                                          // only now may g touch the volumes
	...
	log.Trim(stateGroup)                              // after each checkpoint

and to take the volumes back to the newest point (a group, or a step of
one) at or before a time t:

	p, ok := log.At(t)        // a Point: group, time, what the caller kept with it
	// record p as the volumes' position, durably, then
	err = log.Undo(p, vols)
	err = log.Void(p)

# Steps: points inside a group

A group formed while the secondary was behind spans many intervals of the
primary (a record set not yet sent grows, and the secondary forms one group
of all it received), and with one point per group a time inside it reaches
only the group before, seconds earlier. Yet every time inside the group is
a consistency time as well: each subsystem's horizon passed the group's
time, so the updates stamped at or before it are all in this group or an
earlier one, and, the group being in timestamp order, they are a prefix of
it. CaptureSteps keeps a group's undo in steps, each a prefix of its
updates and a point of its own at the time of its last update (the last
step's at the group's time): the before images of a step are the volumes'
content with the earlier steps applied, read through their writes in
memory, and the whole group's undo is still synced before it touches the
volumes. The secondary cuts steps of at most an interval of updates, so
the point reached by a time T holds every update stamped at or before
T - interval, however long the groups are.

# Why the order makes a crash harmless

A group's undo is synced before the group writes a byte, so the volumes
never hold a write whose before image could be lost. Capture reads the
before images from the volumes as they are when the group is about to be
applied: every earlier group applied, none of this one. After a crash the
secondary applies again every group after the one its state file names; a
group whose undo is on disk whole may have reached the volumes in part, so
its undo is not captured again (Has), which would take the group's own
writes for its before image. A group whose undo is not on disk whole was
never applied; the volumes are then, once the earlier groups are applied
again, exactly as before it, and it is captured again.

Undo reads the undo records oldest first and writes each byte's first
before image met, that of the oldest group after the target that wrote it,
which is what undoing the groups newest first would leave. Whatever the
volumes hold when it starts (an Undo interrupted part-way), it writes the
same bytes, so running it again after a crash gives the same result. The
caller records the new position before Undo: a crash after it leaves
records that the caller recognises as after its position, undoes again
and voids. Recorded only after Undo, a crash part-way would leave the old
position over volumes part-way to the new one, and an Undo to a later
point than the one begun would write back too little.

# Directory layout and framing

The history is a directory that package journal manages: segment files
named after their first record's index, each record framed with its length,
index and CRC-32C, a torn tail of the last segment truncated on Open (see
package journal for the bytes). Record indexes count the records; they are
not group numbers. Trim releases whole segments from the old end: the undo
of groups older than Options.Window, and more while the files exceed
Options.MaxBytes, never the undo of a group after the state file's (a
restart would apply it again), and never the active segment, so the files
may exceed MaxBytes by up to two segments of MaxBytes/16.

Open reads every record's header to rebuild its index (group, time, parts);
the data is read only by Undo.

# Record format

All integers are big-endian. A record, the data of one journal record:

	off  size  field
	0    4     magic "DXHR" (0x44 0x58 0x48 0x52)
	4    1     format version, 1
	5    1     kind: 1 undo, 2 void, 3 gap
	6    1     flags: bit 0 last part of the group's undo,
	           bit 1 applied in a batch with later groups (no recovery point),
	           bit 2 (undo) last part of a step that is not the group's
	           last, a point at the record's time; (void) the void names
	           the point at its time within its group
	7    1     0
	8    8     group number
	16   8     the group's consistency time, Unix nanoseconds (signed); that
	           of the step the record belongs to for the undo of a group in
	           steps; for a void with bit 2, the time of the point
	24   4     part number, from 0
	28   4     length S of the state
	32   4     number E of extents
	36   4     0
	40   S     state: the caller's, opaque here (the secondary: the volumes'
	           pair states as of the group, JSON, empty when all are duplex)

then E extents, back to back:

	off    size  field
	0      1     form: 0 data, 1 zeros
	1      1     length N of the volume name, 1 to 255
	2      N     volume name
	2+N    8     offset in the volume
	10+N   8     length L
	18+N   L     the before image (form 0 only)

A group's undo is one or more undo records with part numbers 0, 1, ...
(PartBytes of data each at most), the last flagged; the extents of one
step never overlap (those of the steps of a group may: a later step's
before image of a byte an earlier step wrote is that write). A record with
part 0 replaces whatever the Log held for that group and later ones (an
interrupted capture, captured again); a void record drops the undo of
every group after its group number, and with bit 2 that of the steps of
its group after its time (the step ending at that time is then the
group's last: the volumes hold the group through it). A void
record has no state and no extents. A gap record (part 0, flagged last,
no extents, the state as an undo record's) says its group was applied
with no undo kept, as one group's before images would exceed
Options.MaxBytes or did not fit on the disk: the undo of every earlier
group is dropped (Gap removes their files), and the gap's group is the
oldest point.

For example, the undo of group 7 at time 1, in one part, with the 2 bytes
"hi" at offset 512 of volume "v", is the 61 bytes

	44 58 48 52  01 01 01 00  00 00 00 00 00 00 00 07
	00 00 00 00 00 00 00 01  00 00 00 00  00 00 00 00
	00 00 00 01  00 00 00 00
	00 01 76  00 00 00 00 00 00 02 00  00 00 00 00 00 00 00 02  68 69

# Compatibility

The constants marked "part of the on-disk format" must never change. A
reader refuses a version or kind it does not know, and unknown flags, as
malformed rather than guess. Flag bit 2 came after the first version: a
reader from before it refuses a history that holds a group in steps, or a
void naming a point within a group, rather than misread its points.
*/
package history
