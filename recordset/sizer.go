package recordset

// Sizer follows the header and payload lengths of a record set as updates
// are added, so that a sender can start a new record set before one would
// exceed what the receiver accepts (its Limits).
type Sizer struct {
	vt      volTable
	hdr     uint64
	payload uint64
	records uint64
}

// NewSizer returns a Sizer for an empty record set of session and subsystem.
func NewSizer(session, subsystem string) *Sizer {
	return &Sizer{hdr: fixedHeaderSize + uint64(len(session)) + uint64(len(subsystem)) + crcSize}
}

func (s *Sizer) with(u *Update) (hdr, payload uint64, newVolume bool) {
	hdr = s.hdr + recordInfoSize
	if _, ok := s.vt.lookup(u.Volume); !ok {
		hdr += volEntrySize + uint64(len(u.Volume))
		newVolume = true
	}
	return hdr, s.payload + uint64(len(u.Data)), newVolume
}

// Fits reports whether the record set with u added stays within lim.
func (s *Sizer) Fits(u *Update, lim Limits) bool {
	hdr, payload, newVolume := s.with(u)
	vols := len(s.vt.names)
	if newVolume {
		vols++
	}
	return hdr <= lim.maxHeader() && payload <= lim.maxPayload() && s.records+1 <= lim.maxRecords() && vols <= maxVolumes
}

// Add accounts for u.
func (s *Sizer) Add(u *Update) {
	hdr, payload, newVolume := s.with(u)
	if newVolume {
		s.vt.add(u.Volume)
	}
	s.hdr, s.payload = hdr, payload
	s.records++
}

// Size returns the length of the encoding of the updates added so far.
func (s *Sizer) Size() int { return int(s.hdr + s.payload + crcSize) }
