package subsystem

// NewPayload returns a buffer of length n for WriteOwned: one a journaled
// write gave back (Recycle) where there is one, as Write takes for its copy.
// Its contents are not zeroed: the caller fills it.
func (s *Subsystem) NewPayload(n int) []byte { return buffers.get(n) }
