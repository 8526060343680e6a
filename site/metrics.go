package site

// The help of each metric both sites export: one name means one thing at
// both, whichever site a dashboard reads it from.
const (
	lagHelp            = "Seconds the time the secondary recovers to trails now (at the primary, as the secondary last acknowledged it); NaN while it has none."
	linkUpHelp         = "1 while the link between the sites is up."
	bytesReplicateHelp = "Data bytes (writes and copies) of the updates journaled at the secondary since this site started: " +
		"as acknowledged, at the primary."
)
