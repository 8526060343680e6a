// Package site assembles the method's parts into the two sites a session
// describes: the primary (volumes behind NBD, the write path of step (a), the
// sidefiles of step (b), the data mover of steps (c) to (e)) and the secondary
// (consistency groups of step (f), journaled shadowing of step (g), and a
// consistent read-only view). The daemons and the demo run these.
//
//	p, err := site.OpenPrimary(cfg, log, site.PrimaryOptions{})
//	err = p.Run(ctx, drainTimeout)
//	s, err := site.OpenSecondary(cfg, log, site.SecondaryOptions{})
//	err = s.Run(ctx)
//
// # What each site keeps on disk
//
// Besides its volumes (the paths the config names), each site keeps its
// state in files this package places; their formats belong to the packages
// named, whose docs describe them. Relative paths in the config resolve
// against the config file's directory, DIR below; SESSION is the session's
// name.
//
// The primary keeps everything in its pair-state directory,
// DIR/SESSION.primary (PairStateDir), created at start:
//
//	LOCK             flock held while a primary runs, taken before any other
//	                 file is read or written: a second primary of the session
//	                 fails at start, naming the holder's pid (which the file
//	                 holds), and changes nothing
//	pairs.json       each pair's state (pending, duplex, suspended, deleted),
//	                 copy progress and the time its secondary copy is
//	                 consistent as of, and whether the last stop was clean
//	                 and had an activity log throughout (one that failed
//	                 while running is off, and recorded so) (package
//	                 pair); JSON, rewritten atomically as the pairs
//	                 change, and at stop; a duplex
//	                 pair's time, which moves with every acknowledgement,
//	                 at most every 10 s (a lower bound after a crash)
//	VOLUME.bitmap    one per suspended volume, the regions changed since its
//	                 suspension, which its resync copies, and per copying
//	                 volume, the regions still to copy (package bitmap:
//	                 "DXBM", CRC-32C); a pending pair without one copies
//	                 everything
//	activity.log     the regions that may hold acknowledged writes the
//	                 secondary has not journaled, marked before each write
//	                 reaches a volume (package actlog: "DXAL" slots at 4 KiB
//	                 boundaries); after a kill -9, the regions copied again
//	timer.json       the common timer's lease: every timestamp handed out is
//	                 below stamps_below_ns, so a restart on a clock that went
//	                 back still stamps after everything it sent (package
//	                 timer); rewritten as stamps approach it, and at stop
//	generation.json  the data generation of the primary's volumes, created
//	                 with the pair state; the secondary must follow it
//	                 (package transport's Generation)
//	switchover.json  written by `duplex switchover` only (package failover's
//	                 Switchover): "pending" before the other site is asked
//	                 to take over, "done" once it has; either way a start
//	                 as the primary is refused (done: rejoin follows the
//	                 new primary; pending: the other site's status says
//	                 whether it took over)
//
// Each site's control address answers from right after its lock is
// taken (the primary's LOCK, the secondary's secondary.lock, a promoted
// site's LOCK), before anything else of its state is read but what
// decides whether the site may start at all (a promotion record, read
// before the promoted site's LOCK, which is in its directory, and with
// the secondary's, whose refusal then comes before the address a running
// promoted site holds; the rejoin record, read with the primary's LOCK,
// whose refusal comes before the address the rejoined secondary holds;
// the reverse primary's pair state, made from the promotion before its
// LOCK, which is in it): status says
// that the site starts and which file the start waits for, and since
// when (control.Status's Starting), and every command that changes its
// state is refused "not yet: starting" until it runs. The lock first: a
// second process of the site is refused on it, naming the holder, not on
// the address the first one holds. A lock that does not come within the
// slow-disk wait (its file's open, or what is read before it, on a disk
// that stopped answering) does not keep the address down: status then
// names the lock, or the file read.
//
// At each start, with the lock held, the temporary files of atomic
// writes (below) that a kill -9 cut short are removed from the site's
// state directory.
//
// Removing the directory makes the next start a new pair state: a new
// generation, which a secondary that followed the old one refuses, and full
// initial copies of every pair.
//
// The secondary keeps its journal directory (secondary.journal) and the
// files beside it, in the journal directory's parent (StatePath):
//
//	secondary.lock           flock held while a process has the site open (a
//	                         running secondary, recover, promote), and by a
//	                         secondary across its attempts to open again after
//	                         a disk fault, while nothing else is open
//	                         (SiteLockPath); it holds the holder's pid
//	JOURNAL/LOCK             flock held while a secondary (or recover) has the
//	                         journal open: two never append to one journal;
//	                         it holds the holder's pid
//	JOURNAL/%016x.seg        journal segments, named after the index of their
//	                         first record: each journaled consistency group
//	                         (package journal, whose doc gives the format)
//	JOURNAL/spare            a released segment's file, kept to be the next
//	                         segment (written over in place); there is one at
//	                         most, and a start removes it
//	state.json               "applied through group G": session, the group
//	                         and its consistency time, each subsystem's last
//	                         record set in it, and each volume's pair state as
//	                         of G (package apply); rewritten atomically after
//	                         the volumes are fsynced
//	identity.json            whose data the volumes hold: the generation they
//	                         follow, the fence recover set, the primary process
//	                         that sent the last journaled group (package
//	                         secondary); rewritten only when one changes
//	promote-ended.json       the switchover promotion requests (their ids)
//	                         this secondary refused or a cancel ended, written
//	                         before the answer: never carried out, across
//	                         restarts too (at most the last 256)
//	history/                 with [secondary] history (HistoryDir): the undo
//	                         of the recent groups, the before images of what
//	                         each overwrote, for recover --at (package
//	                         history, whose doc gives the format)
//	drill.scratch            while a failover drill runs (DrillScratchPath):
//	                         its writes in 4 KiB blocks and the before images
//	                         of what replication overwrote since its point in
//	                         time (package history's Scratch), at most
//	                         [secondary] drill_bytes; never synced, removed
//	                         when the drill stops and at the next start
//	drill.json               while a drill runs: its address, group and start
//	                         (JSON, written atomically); a start that finds
//	                         it reports in the status that the drill ended
//	                         with the last run, until a drill starts or stops
//	coupling-leave.json      a coupled member's switchover owes its group a
//	                         leave ({"group","member"}): written before
//	                         promoting.json, removed once etcd took the
//	                         member out; the promoted site finishes it at
//	                         every start; without a promotion record a start
//	                         removes it (the switchover never took over)
//	coupling-join.json       at a secondary a rejoin made, of a coupled
//	                         session: the session joins its group again
//	                         ({"group","member"}), written by the rejoin,
//	                         removed once the secondary found it a member
//	                         (it adds it if not)
//
// A start replays the journal from the group after state.json's. A JSON
// record here or in the primary's directory that is not one its writer
// makes (cut short, overwritten, null, {}: disk.DecodeRecord) is never
// read as missing, which would start over what it guards: the start
// refuses it, naming the file and what to do (disk.ErrDamaged), and a
// secondary opening again after a disk fault stops retrying on it; only
// coupling-join.json, whose content is the config's, is written anew, and
// a damaged coupling-leave.json at a promoted site is a leave owed all the
// same (a rejoin waits for it, its refusal naming the file), which its log
// says how to make; a damaged drill.json is a drill that ended, of which
// the status knows nothing more. TookBack and PromotedBack, which duplex
// rejoin asks, refuse a damaged record as the starts do.
//
// A running secondary that a switchover promotes (POST /v1/promote, see
// Secondary's Run and ErrPromoted) records the promotion as `duplex
// promote` does, and its daemon then serves the promoted site in the same
// process, on the NBD and control listeners the secondary bound, handed
// over rather than closed and bound again: another process could bind a
// port in between (any bind of port 0 may be given one just freed). It handles the requests one at a time, each once (they carry an
// id), and a request cancelled (POST /v1/promote/cancel, which a primary
// whose answer was lost sends) is never carried out, even by the process
// a restart makes (promote-ended.json): the cancel's answer is what tells
// the primary that its writes may resume. A promotion that
// fails after the fence undoes the fence before it refuses. promoting.json
// beside state.json marks such a promotion under way, from before the
// fence until the promotion is recorded (or its fence undone): a start that
// finds it without the record undoes the fence (the site never took over,
// and no write reached its volumes), so the primary is taken again.
//
// A secondary that `duplex promote` made the session's primary keeps, in
// addition, a directory promoted beside state.json (PromotedDir), created
// by the promotion; while it exists the site runs only as the promoted
// site, never as a secondary again:
//
//	promotion.json   when the site was promoted, the consistency time and
//	                 group its volumes held then, the data generation the
//	                 fence started and the one it followed (package
//	                 failover); written once, atomically
//	VOLUME.bitmap    per volume, the 64 KiB regions written since the
//	                 promotion (package bitmap), which a rejoin copies;
//	                 rewritten at each start and stop
//	changes.log      the same regions as an activity log whose marks are
//	                 never cleared (package actlog), marked before each
//	                 write reaches a volume: after a kill -9, the regions
//	                 the next start adds to the bitmaps
//	timer.json       the promoted site's common timer's lease (package
//	                 timer), as the primary's
//	LOCK             flock held while a promoted site runs
//	primary/         with [primary] listen set, the pair state of the
//	                 promoted site as the primary of the reverse direction
//	                 (OpenReversePrimary): the files of a primary's
//	                 pair-state directory, made once from the promotion
//	                 (every pair suspended with the regions above), and
//	                 from then on what holds the changed regions
//
// An old primary that rejoined the promoted site (`duplex rejoin --yes`)
// keeps rejoin.json in its pair-state directory: when it rejoined, the
// promotion it follows, the regions it discarded, the volumes whose image
// was gone (made anew and copied whole), and whether the promoted site was
// told them; while it exists `duplex primary` refuses to run
// there. As the secondary of the reverse direction it keeps the journal
// directory [primary] journal, and state.json and identity.json beside it,
// as a secondary does.
//
// A switchover at the promoted site hands the session back (failBack):
// the old primary records its promotion in promoted/ beside [primary]
// journal, then its pair-state directory is made anew from it, with
// promotion.json there (the promotion it serves since, which lets the
// other site rejoin it), and the reverse role's promoted/ and journal
// segments go. The promoted site, switched over (switchover.json in
// promoted/primary/), rejoins back (BeginRejoinBack): rejoin.json beside its
// state.json, its old journal's segments and its promoted/ directory
// removed (renamed promoted.retired at once, under its LOCKs, then
// removed, by the next retirement if a crash came between).
//
// The JSON files and the bitmaps are written atomically (a temporary file in
// the same directory, fsync, rename, fsync of the directory), so a crash
// leaves the old content or the new, never a mix; the activity log and the
// journal are written in place, and their CRCs tell a torn write. The
// session's control token (control_token_file) is the operator's file: the
// sites only read it.
package site
