package nbd

// Export is one block device served under a name.
//
// The server calls its methods concurrently, from many goroutines and many
// connections at once, so an implementation must be safe for concurrent use.
// The server has already checked every range against the Size it reported
// when the connection entered transmission, and never calls a write method
// on an export that says it is ReadOnly.
type Export interface {
	// Size is the size in bytes. It is read once per connection, at the
	// end of the handshake: the protocol has no way to tell a connected
	// client that it changed.
	Size() int64
	// ReadOnly makes the server advertise NBD_FLAG_READ_ONLY and refuse
	// writes, trims and zeroing with EPERM.
	ReadOnly() bool
	// ReadAt must fill all of p or return an error. Simple replies cannot
	// report a short read, and the buffer comes from a pool, so bytes it
	// leaves untouched would leak another request's data.
	ReadAt(p []byte, off int64) error
	// WriteAt writes all of p. p is only valid during the call.
	WriteAt(p []byte, off int64) error
	// WriteZeroes makes length bytes at off read back as zeroes, by
	// punching a hole or allocating, as the export likes. A request with
	// NBD_CMD_FLAG_NO_HOLE, which must leave the range allocated, goes to
	// a Provisioner's WriteZeroesAllocated, or is written as zeroes
	// through WriteAt.
	WriteZeroes(off, length int64) error
	// Trim discards length bytes at off; afterwards their contents are
	// unspecified until rewritten.
	Trim(off, length int64) error
	// Flush makes every write completed on ANY connection durable (so
	// CAN_MULTI_CONN is honest). It is also how FUA is implemented: the
	// server calls it after the write and before the reply.
	Flush() error
}

// Provisioner is an Export that can zero a range and keep it allocated:
// the server calls WriteZeroesAllocated for a WRITE_ZEROES with
// NBD_CMD_FLAG_NO_HOLE, after which the protocol says the range MUST be
// fully provisioned, so that later writes there cannot fail for lack of
// space. Without it, the server writes such zeroes through WriteAt.
type Provisioner interface {
	WriteZeroesAllocated(off, length int64) error
}

// Keeper is an Export that keeps the payload of a WRITE instead of copying
// it (a replicating export holds the data until it has shipped it): the
// server reads the payload into a buffer NewPayload returns and hands it to
// KeepWriteAt, in place of WriteAt, and never touches it again.
type Keeper interface {
	// NewPayload returns a buffer of length n for a WRITE's payload.
	NewPayload(n int) []byte
	// KeepWriteAt is WriteAt of a buffer from NewPayload, which is the
	// export's from then on.
	KeepWriteAt(p []byte, off int64) error
}

// Pinner is an Export that gives each connection an export of its own
// when the connection enters transmission (NBD_OPT_GO or
// NBD_OPT_EXPORT_NAME), for example a view of the data as it was then:
// Pin is called once per such connection, and the export it returns is
// closed, if it is an io.Closer, when the connection ends. An error refuses
// the connection's choice of export.
type Pinner interface {
	Pin() (Export, error)
}

// Exports resolves export names.
type Exports interface {
	// Lookup returns the export called name. The server resolves the
	// empty name itself (to the only export, when there is exactly one),
	// so Lookup need not handle it specially.
	Lookup(name string) (Export, bool)
	// Names lists every export, in the order NBD_OPT_LIST reports them.
	Names() []string
}

// Prompter is an Export that can say whether a write now would be served
// without waiting: not paced, not held for room or by a switchover, no
// wait of its acknowledgement. The server then serves such a write on the
// goroutine that reads the connection, when more requests are buffered
// behind it, and sends the replies of all it served so together: one
// hand-over of a request between goroutines fewer a write, and one wake-up
// of the client a batch. A write it cannot promise goes to a worker, so
// that a held write never holds up the requests behind it. A promise is
// about the Export's state, not its disk: a promised write whose volume
// write hangs holds them up some milliseconds (more for a large write:
// what a slow disk would take), then the server reads on in another
// goroutine.
type Prompter interface {
	// Prompt says a write of n bytes at off now would not wait. It may be wrong
	// the other way (say no when the write would not have waited), and
	// now and then a write it promised may wait briefly (its state moved
	// in between), but never for long.
	Prompt(off int64, n int) bool
	// WriteNow is the write at off that Prompt promised: KeepWriteAt's
	// (p is NewPayload's, handed over) for a Keeper, WriteAt's otherwise.
	// Where the state moved in between so that the write would wait for
	// long (a switchover pausing the writes), it does nothing and says so
	// (held): the server then hands the write to a worker, which serves
	// it as any other.
	WriteNow(p []byte, off int64) (held bool, err error)
}
