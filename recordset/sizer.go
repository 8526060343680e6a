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
	return s.withData(u.Volume, len(u.Data))
}

func (s *Sizer) withData(volume string, data int) (hdr, payload uint64, newVolume bool) {
	hdr = s.hdr + recordInfoSize
	if _, ok := s.vt.lookup(volume); !ok {
		hdr += volEntrySize + uint64(len(volume))
		newVolume = true
	}
	return hdr, s.payload + uint64(data), newVolume
}

// Fits reports whether the record set with u added stays within lim.
func (s *Sizer) Fits(u *Update, lim Limits) bool {
	return s.FitsData(u.Volume, len(u.Data), lim)
}

// FitsData reports whether the record set with an update of volume that
// carries data bytes added stays within lim: whether an update of a size
// to come would.
func (s *Sizer) FitsData(volume string, data int, lim Limits) bool {
	hdr, payload, newVolume := s.withData(volume, data)
	vols := len(s.vt.names)
	if newVolume {
		vols++
	}
	return hdr <= lim.maxHeader() && payload <= lim.maxPayload() && s.records+1 <= lim.maxRecords() && vols <= maxVolumes
}

// SizeWith returns the length of the encoding with an update of volume
// that carries data bytes added.
func (s *Sizer) SizeWith(volume string, data int) int {
	hdr, payload, _ := s.withData(volume, data)
	return int(hdr + payload + crcSize)
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
