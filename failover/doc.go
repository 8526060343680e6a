// Package failover is what happens to a session after its primary site is
// lost: the secondary is promoted to serve its volumes, and the old primary
// later rejoins as the secondary of the promoted site, with only the regions
// either site changed copied across. The method of claim 1 (US patent
// 5,734,818) runs unchanged in each direction; this package keeps what lets
// the direction change without a full copy: the record of the promotion and
// the regions the promoted site changed since.
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
// rejoin's copy of it.
//
// # The fence keeps the old primary out
//
// A promoted site listens on no link address, and its identity is fenced:
// a `duplex secondary` started there by mistake refuses to run over a
// promotion, and a secondary that is fenced refuses every primary of the
// old generation. The old primary, restarted, finds no secondary to talk to
// and tracks its own writes as its pairs suspend.
//
// # One config, both directions
//
// A session's config holds both sites' addresses, and the reverse
// direction reads it with the sides swapped: the promoted site (the
// [secondary] section's volumes) is the primary, serving NBD on
// secondary.nbd and control on secondary.control; the old primary (the
// [primary] section's volumes and subsystems) is its secondary, with its
// control on primary.control and read-only exports on primary.nbd. The one
// address the config lacks is where the old primary listens for the link:
// a `listen` key in [primary], which rejoin will require (the promoted site
// dials it, with [secondary]'s TLS keys as the client's). Which way a
// site runs is the promotion record, not the config: a site with one is
// the primary.
//
// # Rejoin (not built yet)
//
// `duplex rejoin` at the old primary makes it the promoted site's
// secondary. It needs the regions it changed after the consistency time the
// promoted site holds (Promotion.ConsistencyTime): its activity log's marks
// (writes that may not have reached the secondary), its suspended pairs'
// bitmaps (writes since each suspension), and its sidefile's unsent
// regions, which after a kill -9 are among the log's marks. Those writes
// are discarded: the union of those regions and the promoted site's
// Changes is copied from the promoted site, under the rule every resync
// follows (the old primary's volumes stay at their pre-copy image until the
// copy's end, then jump). The command says per volume how many regions and
// bytes it would copy before it does anything (--yes goes on). Its
// generation check: the old primary's generation must be the one the
// promotion followed, or nothing it holds shares history with the
// promoted site, and only a full copy will do.
//
// A planned switchover drains the current primary, stops its writes, waits
// until the other site holds everything, and promotes it: nothing is
// discarded, and the changed regions are empty at both sites.
package failover
