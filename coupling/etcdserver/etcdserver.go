// Package etcdserver runs an embedded single-node etcd for the coupled
// sessions of duplex demo --coupled, duplex etcd and the tests: a real
// etcd (go.etcd.io/etcd/server/v3/embed), not a stand-in.
package etcdserver

import (
	"fmt"
	"io"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Server is a running etcd.
type Server struct {
	e     *embed.Etcd
	level zap.AtomicLevel
	// ClientURL is where clients reach it.
	ClientURL string
}

// Start starts a single-node etcd keeping its data in dir, serving
// clients at clientURL and its (unused) peer port at peerURL, both
// http://host:port, logging to logs at logLevel (etcd's: debug, info, warn,
// error). It returns once the server is ready to serve.
func Start(dir, clientURL, peerURL, logLevel string, logs io.Writer) (*Server, error) {
	return start(dir, clientURL, peerURL, logLevel, logs, limits{retention: Retention})
}

// Retention is how much of its history the embedded etcd keeps (etcd's
// periodic auto-compaction, which compacts each hour to the revision of
// Retention ago, so between one and two hours are kept). Every member's
// publication is a revision, about 58 MB of etcd's database an hour a
// member publishing each 20 ms round: kept whole, it fills etcd's quota
// (2 GiB) in about 9 hours with four members, and etcd then refuses every
// write, which holds every member's master time. Compacted, the pages it
// freed take the new revisions: the database, whose whole size the quota
// counts, free pages too, levels out without a defragmentation at about
// 1.5 times what two hours of publications take (measured at the scale of
// seconds: TestCompactedDatabaseStopsGrowing), some 175 MB a member. What
// the coupling reads from the history is an add cut short
// (Store.AddedView), which the member's secondary finishes at its next
// round; left unfinished longer than this, the add must be run again. A
// watch of the group that etcd cancels for a compaction past it
// (resumed after a lost stream) is replaced by a read of the range.
const Retention = time.Hour

// limits are what a test shrinks: etcd's quota of its database (0:
// etcd's default, 2 GiB) and how long it keeps its history (0: all);
// noFsync spares a test that fills the quota a sync a write.
type limits struct {
	quota     int64
	retention time.Duration
	noFsync   bool
}

func start(dir, clientURL, peerURL, logLevel string, logs io.Writer, lim limits) (*Server, error) {
	level, err := zap.ParseAtomicLevel(logLevel)
	if err != nil {
		return nil, fmt.Errorf("etcd: log level: %w", err)
	}
	cu, err := url.Parse(clientURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: client URL %q: %w", clientURL, err)
	}
	pu, err := url.Parse(peerURL)
	if err != nil {
		return nil, fmt.Errorf("etcd: peer URL %q: %w", peerURL, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = "duplex"
	cfg.Dir = dir
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes, cfg.UnsafeNoFsync = lim.quota, lim.noFsync
	if lim.retention > 0 {
		cfg.AutoCompactionMode = embed.CompactorModePeriodic
		cfg.AutoCompactionRetention = lim.retention.String()
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(logs), level), zap.AddCaller()))
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd: not ready within 60s")
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return &Server{e: e, level: level, ClientURL: clientURL}, nil
}

// Err reports a failure of the running server.
func (s *Server) Err() <-chan error { return s.e.Err() }

// Close stops the server. etcd logs each of its listeners ending as an
// error ("use of closed network connection", "server closed"), which a
// stop asked for is not: its log is silenced first.
func (s *Server) Close() {
	s.level.SetLevel(zapcore.FatalLevel)
	s.e.Close()
}
