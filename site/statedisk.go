package site

import (
	"fmt"
	"time"

	"duplex/control"
	"duplex/timer"
)

// logAndLeaseWaits says what of a site's state directory has waited on
// its disk for slow or longer, as DISK-WAIT: the write of its activity
// log (logName: the primary's, or a promoted site's changed regions'
// log), which logWaiting client writes wait for, and the write of the
// common timer's lease. A disk that stops answering fails nothing: the
// writes to regions not yet marked wait with it, and once the stamps
// reach the lease on disk, every write does.
func logAndLeaseWaits(logName string, logWrite time.Duration, logWaiting int, tm *timer.Timer, slow time.Duration, now time.Time) []string {
	var out []string
	if logWrite >= slow {
		out = append(out, fmt.Sprintf("%s write: waiting on the disk for %s (since %s), %d client writes waiting for their regions' marks",
			logName, logWrite.Round(time.Millisecond), now.Add(-logWrite).UTC().Format(time.RFC3339), logWaiting))
	}
	if lease, waiting := tm.LeaseWait(); lease >= slow {
		out = append(out, fmt.Sprintf("timer lease write: waiting on the disk for %s (since %s), %d updates waiting for their timestamps; once the stamps reach the lease on disk every client write of every volume waits with it",
			lease.Round(time.Millisecond), now.Add(-lease).UTC().Format(time.RFC3339), waiting))
	}
	return out
}

// logAndLeaseSamples are the metrics of the waits logAndLeaseWaits says.
func logAndLeaseSamples(logWrite time.Duration, logWaiting int, tm *timer.Timer) []control.Sample {
	lease, leaseWaiting := tm.LeaseWait()
	return []control.Sample{
		control.Gauge("activity_log_write_seconds", "Seconds the activity log's write (and fsync) under way has taken (at a promoted site, its changed regions' log's); 0 while none is "+
			"(the writes to regions not yet marked wait for it).", logWrite.Seconds()),
		control.Gauge("activity_log_waiting_writes", "Client writes waiting for the activity log to write their regions' marks.", float64(logWaiting)),
		control.Gauge("timer_lease_write_seconds", "Seconds the write of the common timer's lease under way has taken; 0 while none is "+
			"(once the timestamps reach the lease on disk, every client write waits for it).", lease.Seconds()),
		control.Gauge("timer_waiting_stamps", "Updates (client writes among them) waiting for the common timer's lease to be written before they are stamped.", float64(leaseWaiting)),
	}
}
