package nbd

import (
	"errors"
	"strconv"
	"syscall"
)

// Wire constants from doc/proto.md of the NBD reference implementation.
// Only those a client of this package needs are exported; the rest stay
// private so the API does not grow with the protocol.

const (
	nbdMagic      = 0x4e42444d41474943 // "NBDMAGIC"
	optMagic      = 0x49484156454F5054 // "IHAVEOPT"
	optReplyMagic = 0x3e889045565a9
	requestMagic  = 0x25609513
	replyMagic    = 0x67446698 // simple reply

	// Handshake flags (server) and client flags.
	flagFixedNewstyle  = 1 << 0
	flagNoZeroes       = 1 << 1
	flagCFixedNewstyle = 1 << 0
	flagCNoZeroes      = 1 << 1

	// Options.
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8

	// Option replies.
	repAck        = 1
	repServer     = 2
	repInfo       = 3
	repFlagError  = 1 << 31
	repErrUnsup   = repFlagError | 1
	repErrInvalid = repFlagError | 3
	repErrTLSReqd = repFlagError | 5
	repErrUnknown = repFlagError | 6

	// Information types for NBD_REP_INFO.
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3

	// maxOptionLen bounds the data of one handshake option. Real options
	// are an export name (at most 4096 bytes by the spec) plus a few info
	// requests; anything bigger is an attack or garbage.
	maxOptionLen = 64 << 10

	// DefaultMaxRequest is the largest READ/WRITE payload served when
	// Server.MaxRequest is zero: the 32 MiB the protocol says every
	// server should accept.
	DefaultMaxRequest = 32 << 20

	// MaxAccepted is the largest READ or WRITE payload served whatever
	// maximum is advertised, as nbdkit does: some clients ignore the
	// advertised maximum, and failing their large requests would fail
	// their I/O for nothing.
	MaxAccepted = 64 << 20

	// minBlock and prefBlock are what NBD_INFO_BLOCK_SIZE advertises. A
	// minimum of 1 means no alignment is enforced (the export is a file or
	// journal, not a raw sector device).
	minBlock  = 1
	prefBlock = 4096

	requestHeaderLen = 28
	replyHeaderLen   = 16
)

// Transmission flags, as sent at the end of the handshake.
const (
	FlagHasFlags        = 1 << 0
	FlagReadOnly        = 1 << 1
	FlagSendFlush       = 1 << 2
	FlagSendFUA         = 1 << 3
	FlagSendTrim        = 1 << 5
	FlagSendWriteZeroes = 1 << 6
	FlagCanMultiConn    = 1 << 8
)

// Command types.
const (
	CmdRead        = 0
	CmdWrite       = 1
	CmdDisc        = 2
	CmdFlush       = 3
	CmdTrim        = 4
	CmdCache       = 5
	CmdWriteZeroes = 6
)

// Command flags.
const (
	CmdFlagFUA      = 1 << 0
	CmdFlagNoHole   = 1 << 1
	CmdFlagDF       = 1 << 2
	CmdFlagFastZero = 1 << 4
)

// Errno is an error value carried in an NBD reply.
type Errno uint32

// The error values the protocol defines.
const (
	EPERM     Errno = 1
	EIO       Errno = 5
	ENOMEM    Errno = 12
	EINVAL    Errno = 22
	ENOSPC    Errno = 28
	EOVERFLOW Errno = 75
	ENOTSUP   Errno = 95
	ESHUTDOWN Errno = 108
)

func (e Errno) Error() string {
	switch e {
	case EPERM:
		return "nbd: operation not permitted (EPERM)"
	case EIO:
		return "nbd: input/output error (EIO)"
	case ENOMEM:
		return "nbd: cannot allocate memory (ENOMEM)"
	case EINVAL:
		return "nbd: invalid argument (EINVAL)"
	case ENOSPC:
		return "nbd: no space left on device (ENOSPC)"
	case EOVERFLOW:
		return "nbd: value too large (EOVERFLOW)"
	case ENOTSUP:
		return "nbd: operation not supported (ENOTSUP)"
	case ESHUTDOWN:
		return "nbd: server shutting down (ESHUTDOWN)"
	}
	return "nbd: error " + strconv.FormatUint(uint64(e), 10)
}

// Is lets errors.Is(err, syscall.ENOSPC) and friends work on replies: the
// protocol's values were chosen to be the Linux errno numbers.
func (e Errno) Is(target error) bool {
	t, ok := target.(syscall.Errno)
	return ok && uint32(t) == uint32(e)
}

// errnoOf maps an Export error to the wire. The protocol allows only a few
// values; EDQUOT and EFBIG are "out of space" as far as a block device user
// is concerned (the spec says so), anything else is an I/O error. An Export
// that wants a particular reply (say EPERM once its volume is fenced) can
// return an Errno, which passes through unchanged.
func errnoOf(err error) Errno {
	var e Errno
	switch {
	case err == nil:
		return 0
	case errors.As(err, &e) && e != 0:
		return e
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, syscall.EFBIG):
		return ENOSPC
	}
	return EIO
}
