// Package failover is what happens to a session after its primary site is
// lost: the secondary is promoted to serve its volumes, and the old primary
// later rejoins as the secondary of the promoted site, with only the regions
// either site changed copied across. The method of claim 1 (US patent
// 5,734,818) runs unchanged in each direction; this package keeps what lets
// the direction change without a full copy: the record of the promotion and
// the regions the promoted site changed since. Package site runs each
// direction with the same primary and secondary, on a config read with the
// sides swapped (config.Config.Reversed).
//
// # Promotion
//
// `duplex promote` at the secondary applies every journaled group it may
// (as `duplex recover` does), fences the secondary (its volumes start a
// data generation of their own, and the old primary is refused from then
// on), and records the promotion (Promotion, promotion.json): the
// consistency time and group the volumes hold, the generation the fence
// started and the one it followed. Only then does it serve the volumes
// read-write, over NBD on the secondary's configured nbd address. A write
// is stamped by a common timer of the promoted site's own (persistent like
// the primary's, and started above the promotion's consistency time, so
// every stamp there follows everything the old primary sent), and goes
// through the write path of a primary whose every pair is suspended: its
// region is marked, then the write reaches the volume. A later run of
// `duplex promote` finds the record and serves again, without touching the
// journal.
//
// # The changed regions
//
// Changes keeps, per volume, a bitmap of the 64 KiB regions written since
// the promotion (package bitmap, VOLUME.bitmap, the format of a suspended
// pair's). A write's region reaches the disk before the write reaches the
// volume, through an activity log (package actlog, changes.log) at the
// bitmap's granularity whose marks are sticky: one fsync per region the
// first time it is written, none after, and never cleared. So after a kill
// -9 the log holds every region an acknowledged write (or one in flight)
// touched, and Open adds them to the bitmaps it loaded, which it then
// writes back. The bitmaps are rewritten at each start and clean stop;
// between those the log is what is durable. Nothing clears a region but a
// rejoin's copy of it, not even a run with a volume left out of the config:
// the log's marks of a volume the run does not have are added to its
// bitmap file before the log is written again (a start refuses, naming
// the volume, if that file cannot be read), so they wait there for the
// volume to come back. Each first write of a region rewrites a slot of the
// log, which at this granularity holds 2 KiB per GiB of volume (2 MiB for
// a TiB): the price of a bitmap that is exact after a crash; a coarser log
// would only widen what a crash leaves to copy.
//
// # The fence keeps the old primary out
//
// A promoted site listens on no link address, and its identity is fenced:
// a `duplex secondary` started there by mistake refuses to run over a
// promotion, and a secondary that is fenced refuses every primary of the
// old generation. The old primary, restarted, finds no secondary to talk
// to: its writes stay in its sidefile and activity log, and its pairs
// suspend into bitmaps once the sidefile fills, as with any link down.
//
// # One config, both directions
//
// A session's config holds both sites' addresses, and the reverse
// direction reads it with the sides swapped: the promoted site (the
// [secondary] section's volumes) is the primary, serving NBD on
// secondary.nbd and control on secondary.control; the old primary (the
// [primary] section's volumes and subsystems) is its secondary, with its
// control on primary.control and read-only exports on primary.nbd. The old
// primary's secondary-side places are two keys of [primary] that rejoin
// requires: `listen`, where it takes the link (the promoted site dials it,
// with [secondary]'s TLS keys as the client's), and `journal`, its journal
// directory as a secondary (its state.json and identity.json beside it).
// Which way a site runs is the promotion record and the rejoin record, not
// the config: a site with a promotion is the primary, an old primary with
// a rejoin record (rejoin.json in its pair-state directory) is the
// secondary, and `duplex primary` there is refused. Once rejoined, the old
// primary follows the promotion's generation.
//
// With [primary] listen set, `duplex promote` runs the promoted site as
// the primary of the reversed config (site.OpenReversePrimary): the first
// time, its pair state (promoted/primary/) is made from the promotion,
// every pair suspended as of the promotion's consistency time with the
// Changes bitmaps as its changed regions, the data generation the fence
// started, and the timer's mark; from then on a write marks its pair's
// bitmap and the primary's activity log, as at any suspended pair, and
// the data mover dials the old primary at [primary] listen. Nothing
// answers there until the rejoin; the pairs stay suspended meanwhile
// (suspended by hand: the link coming up does not resume them). After a
// kill -9 the activity log's regions are added at its granularity (1 MiB),
// coarser than changes.log's 64 KiB: a crash widens what the rejoin
// copies, never narrows it.
//
// # Rejoin
//
// `duplex rejoin` at the old primary makes it the promoted site's
// secondary. It needs the regions where the old primary may hold writes
// the promoted site never had, after the promotion's consistency time
// (pair.ReadDivergence): its activity log's marks after an unclean stop
// (writes the secondary may not have journaled, those its sidefile held
// unsent when it died among them), its suspended pairs' bitmaps (writes
// since each suspension) and its copying pairs' (regions not yet copied);
// the whole volume where nothing says which regions (a first copy, a
// deleted pair, a run without an activity log). Those writes are
// discarded: the union of those regions and the promoted site's Changes
// is copied from the promoted site, under the rule every resync follows
// (the old primary's volumes stay at their image from before the copy
// until its end, then jump), and replication then runs the other way. The
// old primary must hold the generation the promotion followed, or the two
// sites share no history and only a full copy will do. Groups the
// promoted site journaled after its consistency time but never applied (a
// resync was in progress when it was promoted, or a coupled group's master
// time held them) are in neither set: the reverse direction reads their
// regions from the promoted site's journal when it makes its pair state,
// and adds them to the pairs' (the promoted site served without them: the
// old primary's copy of them is discarded).
//
// The report (site.PlanRejoin) gives per volume the bytes and regions it
// copies and discards, from the promoted site's /v1/changes and the old
// primary's files, read without changing them. `duplex rejoin --yes` then,
// in this order, each step durable before the next:
//
//  1. seeds the old primary's state as the secondary of the reversed
//     config (site.BeginRejoin, secondary.Seed): the promoted site's
//     generation followed, applied through no group, each volume
//     suspended as of the promotion's consistency time (not consistent at
//     all where the whole volume is copied), and records the rejoin with
//     the regions it discards (rejoin.json);
//  2. runs that secondary (its volumes change only by whole consistency
//     groups from here on);
//  3. tells the promoted site the regions it discards (POST /v1/rejoin,
//     with the control token); the promoted site adds them to each
//     suspended pair's changed regions, saves them, and resumes every
//     pair, and the rejoin record notes that it did.
//
// The resync that follows is a resync like any other: its markers make
// the old primary hold every group from the first until the last copy
// ends, so its volumes stay at their image from before the copy, then
// jump to the promoted site's (invariant 6). A kill -9 of the old primary
// at any point leaves that image or the promoted site's, and `duplex
// rejoin --yes` run again reads the rejoin record, replays the journal
// (the hold re-opened from its markers) and, if the promoted site was not
// told yet, tells it (a pair resumed already takes nothing more: its
// regions were added before its resume). A kill -9 of the promoted site
// mid-copy copies, once it runs again, what the resync had left and the
// regions of its activity log (as any primary restarted in the middle of a
// resync does), still under the hold; before the resume, the regions stay
// in the suspended pairs' bitmaps.
//
// A planned switchover drains the current primary, stops its writes, waits
// until the other site holds everything, and promotes it: nothing is
// discarded, and the changed regions are empty at both sites. The running
// secondary is promoted in place (its daemon serves the promoted site
// without a restart), and the old primary records the switchover
// (Switchover, switchover.json in its pair-state directory), which keeps
// it from starting as the primary again; a rejoin there, once it follows
// the promoted site, is what retires the record. A member of a coupled
// group applies the last group acknowledged only once the group's master
// time reaches it: its promotion waits for that before the fence, and the
// member leaves the group once promoted (package coupling).
//
// # Fail back
//
// The promoted site, running as the primary of the reverse direction with
// the old primary rejoined as its secondary, hands the session back by the
// same switchover: it drains, holds its writes, and asks the old
// primary's running secondary to take over, which promotes it in place
// (a Promotion of the reversed config, in the promoted directory beside
// [primary] journal). The old primary is then the session's primary again
// in the session's own direction, not a promoted site of the reversed
// one, so that its restarts are plain `duplex primary` and the next
// failover starts from the layout of the first: at its start its
// pair-state directory is made anew from that promotion (every pair
// suspended as of the promotion's consistency time, the generation the
// promotion started, the promotion copied there, the rejoin record, the
// old switchover record and the activity log of its first life removed,
// the rejoin record last, so that a kill -9 anywhere leaves a state the
// next start completes), and the secondary role's journal and promotion
// record are retired. The site that handed the session back holds nothing
// the old primary lacks (the switchover ended only once it held every
// write acknowledged there, and writes were refused from then on): `duplex
// rejoin` there discards nothing, removes the old journal's segments
// (every group in them was applied before its promotion), seeds its
// secondary state (each volume suspended as of the switchover's
// consistency time, the old primary's new generation followed), records
// the rejoin beside its journal, retires its promoted directory, and asks
// the old primary to resume its pairs: the regions it wrote since it took
// the session back are copied, and replication runs as it did at the
// start.
package failover
