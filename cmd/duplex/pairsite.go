package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http/httptrace"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"duplex/config"
	"duplex/control"
)

// pairStatusWait bounds the status asked of both sites before a pair
// operation is routed.
var pairStatusWait = 5 * time.Second

// secondaryConnectWait bounds the wait for the config's secondary to take
// the connection, from its dial (after its name's lookup), once the
// config's primary answered as the primary: one SYN lost and sent again
// after a second, on a link of up to 500 ms.
var secondaryConnectWait = 1500 * time.Millisecond

// target returns the control address that the pair operation goes to: the
// one --addr names, else the session's primary now. After duplex promote
// the promoted site (the config's secondary) holds the pairs while the
// config still names the old primary; the operation goes there only when
// that site answers as the promoted primary and the config's primary is
// gone or answers as a secondary, and the output says so. Both answering
// as primary is refused: either could be the wrong one; so is a primary
// that is silent rather than gone, a site that answers as a secondary
// (it has no pairs), and one that answers for another session, whether
// the config or --addr names it.
//
// Its failures begin with the command ("pair add: the site --addr names,
// ..., gave no status"), as the operation's own do.
func (f pairFlags) target(ctx context.Context, cfg *config.Config, stdout io.Writer) (control.Endpoint, error) {
	at, err := f.findTarget(ctx, cfg, stdout)
	var ue *usageError
	if err != nil && !errors.As(err, &ue) && !strings.HasPrefix(err.Error(), f.syn.path+" ") && !strings.HasPrefix(err.Error(), f.syn.path+":") {
		err = &contextError{msg: f.syn.path + ": " + err.Error(), err: err}
	}
	return at, err
}

func (f pairFlags) findTarget(ctx context.Context, cfg *config.Config, stdout io.Writer) (control.Endpoint, error) {
	ctx, cancel := context.WithTimeout(ctx, pairStatusWait)
	defer cancel()
	if *f.addr != "" {
		at, err := f.named(ctx, cfg)
		if err != nil {
			return at, err
		}
		// The site named is the session's: one of another session, the
		// token the same, would take the operation as its own.
		st, err := control.Fetch(ctx, at)
		if errors.Is(err, control.ErrNBDAddress) || errors.Is(err, control.ErrWrongScheme) {
			// What answered says the address given is mistaken.
			return control.Endpoint{}, f.usageErrorf("--addr %s: %w", *f.addr, err)
		}
		if err != nil {
			return control.Endpoint{}, noStatus("the site --addr names, "+at.Addr+",", at, err, "", true)
		}
		if err := sameSession("the site --addr names, "+at.Addr+",", st, cfg.Session); err != nil {
			return control.Endpoint{}, err
		}
		if runsAsNoPrimary(st) {
			return control.Endpoint{}, notThePrimary(at, st)
		}
		return at, nil
	}
	prim, err := controlOf(cfg, "primary")
	if err != nil {
		return prim, err
	}
	if cfg.Secondary.Control == "" {
		// No promoted site to ask, but the address may still answer for
		// another session, whose primary would take the operation as its
		// own.
		ps, perr := control.Fetch(ctx, prim)
		if perr != nil {
			return control.Endpoint{}, noStatus("the config's primary "+prim.Addr, prim, perr, "", false)
		}
		if err := sameSession("the config's primary "+prim.Addr, ps, cfg.Session); err != nil {
			return control.Endpoint{}, err
		}
		if runsAsNoPrimary(ps) {
			return control.Endpoint{}, notThePrimary(prim, ps)
		}
		return prim, nil
	}
	sec, err := controlOf(cfg, "secondary")
	if err != nil {
		return prim, err
	}
	// Both asked at once: a site whose host is gone (no answer at all,
	// not a refusal) must not take the other's time.
	var ss control.Status
	var serr error
	done, connected, expired := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var once, dialing sync.Once
	reached := func() { once.Do(func() { close(connected) }) }
	// The bound runs from the dial, not from before the lookup: a name
	// slow to resolve (a search domain's server silent) says nothing of
	// the host, which may be a promoted site that answers at once. A
	// lookup that does not end has the status wait.
	dial := func() {
		dialing.Do(func() { time.AfterFunc(secondaryConnectWait, func() { close(expired) }) })
	}
	trace := &httptrace.ClientTrace{
		DNSDone:      func(httptrace.DNSDoneInfo) { dial() },
		ConnectStart: func(_, _ string) { dial() },
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				reached()
			}
		},
		GotConn: func(httptrace.GotConnInfo) { reached() },
	}
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	go func() {
		defer close(done)
		ss, serr = control.Fetch(httptrace.WithClientTrace(sctx, trace), sec)
	}()
	ps, perr := control.Fetch(ctx, prim)
	heard := perr == nil && linkHeard(ps, time.Duration(cfg.Interval))
	if perr == nil && ps.Role == "primary" && heard {
		// What is left to learn of the secondary is whether it answers
		// as a promoted primary too (refused: either could be the wrong
		// one). One that takes the connection has the whole status wait
		// to say so; an address that takes none (its host gone, its
		// packets dropped) is no running site, and must not hold every
		// operation at the primary up for the wait. A primary whose
		// secondary has not acknowledged anything of late says nothing
		// of it (a partition leaves its link "connected"): the secondary
		// may be promoted, and slow to connect from here (SYNs lost), so
		// it has the whole status wait.
		select {
		case <-done:
		case <-connected:
		case <-expired:
			select {
			case <-connected:
			default:
				scancel()
			}
		}
	}
	<-done
	noConnection := serr != nil && sctx.Err() != nil && ctx.Err() == nil
	if noConnection {
		serr = fmt.Errorf("took no connection within %s: %w", secondaryConnectWait, serr)
	}
	// A site of another session on the primary's address is neither this
	// session's primary nor gone: this session's old primary may run
	// elsewhere, and a primary there would take the operation as its own.
	if perr == nil {
		if err := sameSession("the config's primary "+prim.Addr, ps, cfg.Session); err != nil {
			return control.Endpoint{}, err
		}
	}
	primaryAnswers := perr == nil && ps.Role == "primary"
	// A site of another session on the secondary's address (a stale
	// config) takes nothing: the token may be the same, and a volume of
	// the same name would be its pair.
	other := serr == nil && ss.Session != cfg.Session
	promoted := !other && serr == nil && ss.Role == "primary" && ss.PromotedAt != ""
	// Only a primary that is gone lets the promoted site take the
	// operation: one that is slow, cut off from this host past its
	// handshake, or answering with no status may still run as the
	// primary (a split brain), and both answering is refused.
	stillThere := ""
	if promoted && perr != nil {
		stillThere = notGone(ctx, perr)
	}
	switch {
	case other && !primaryAnswers && ss.Role == "primary":
		return control.Endpoint{}, fmt.Errorf("the config's secondary %s answers as a primary of session %q, not of session %q, "+
			"and the config's primary %s %s: check the config's control addresses, or name the site that takes the operation with --addr",
			sec.Addr, ss.Session, cfg.Session, prim.Addr, notPrimary(ps, perr))
	case primaryAnswers && promoted:
		return control.Endpoint{}, fmt.Errorf("both sites answer as the primary: %s and %s, promoted since %s; "+
			"name the one that takes the operation with --addr", prim.Addr, sec.Addr, ss.PromotedAt)
	case primaryAnswers && !other && serr == nil && ss.Role == "primary" && ss.Starting != nil:
		// Only a promoted site starts as a primary at the config's
		// secondary address, and until it has read its state it says
		// nothing of its promotion: the old primary, running as a
		// primary too, may be the wrong one.
		return control.Endpoint{}, fmt.Errorf("both sites answer as the primary: %s, and %s, which %s; "+
			"name the one that takes the operation with --addr once it runs (duplex status)",
			prim.Addr, sec.Addr, isStarting(ss))
	case stillThere != "":
		return control.Endpoint{}, fmt.Errorf("the config's primary %s %s, and the config's secondary %s answers as the primary promoted since %s: "+
			"the old primary may still run as a primary; name the site that takes the operation with --addr",
			prim.Addr, stillThere, sec.Addr, ss.PromotedAt)
	case promoted:
		fmt.Fprintf(stdout, "the promoted site at %s (primary since %s) takes the operation: the config's primary %s %s\n",
			sec.Addr, ss.PromotedAt, prim.Addr, notPrimary(ps, perr))
		return sec, nil
	case !primaryAnswers && !other && serr == nil && ss.Role == "primary" && ss.Starting != nil:
		// The promoted site started again and has not read its
		// promotion yet. The config's primary is not the one to ask:
		// rejoined, it has no pairs (and --all would find none, and
		// say every volume is left as it is), and gone, it answers
		// nothing that names the site that holds them.
		return control.Endpoint{}, fmt.Errorf("not yet: %s, and takes the operation once it runs: the config's primary %s %s; "+
			"run the command again then (duplex status)", startingSite(sec, ss), prim.Addr, notPrimary(ps, perr))
	case perr == nil && ps.Role == "secondary" && ps.PromotedAt != "":
		// The config's primary rejoined the promoted site, which does
		// not answer as the primary now: sent to the rejoined site, the
		// operation would be refused for want of pairs, or with --all
		// find none and end as if done.
		return control.Endpoint{}, fmt.Errorf("the config's primary %s rejoined the promoted site (primary since %s) as its secondary: "+
			"pair operations run at the promoted site, the config's secondary %s, which %s; run the command again once it runs (duplex status), "+
			"or name the site that takes the operation with --addr", prim.Addr, ps.PromotedAt, sec.Addr, notPromoted(ss, serr, cfg.Session))
	case perr == nil && runsAsNoPrimary(ps):
		return control.Endpoint{}, notThePrimary(prim, ps)
	case perr != nil:
		return control.Endpoint{}, noStatus("the config's primary "+prim.Addr, prim, perr,
			fmt.Sprintf("the config's secondary %s %s", sec.Addr, notPromoted(ss, serr, cfg.Session)), false)
	}
	// A secondary that gave no answer may be a promoted site this host
	// cannot reach as well as a host gone. Refusing would fail every
	// operation of an outage, and teach --addr, which skips every check;
	// the operation goes on, and the operator who promoted it learns at
	// once which site took it. A refused connection means no site runs
	// there, and a secondary that acknowledges this primary's record sets
	// is not promoted: neither is said.
	if serr != nil && !heard {
		// Not heard, the secondary had the whole status wait: not
		// cut short for want of a connection.
		if why := notGone(ctx, serr); why != "" {
			fmt.Fprintf(stdout, "the config's primary %s takes the operation: the config's secondary %s %s, and is taken as not promoted; "+
				"if it was promoted, the primary here runs beside it (a split brain): check it with duplex status --addr %s\n",
				prim.Addr, sec.Addr, why, sec.Addr)
		}
	}
	return prim, nil
}

// linkHeardWithin bounds, in intervals of the session (and at least
// linkHeardFloor), how long ago a primary's secondary may have last
// acknowledged anything on its link for the link to say that the
// secondary follows it: idle, a receipt of its heartbeats comes every
// interval, and the acknowledged time trails by well under a second at
// the default 20 ms interval.
const (
	linkHeardWithin = 20
	linkHeardFloor  = 2 * time.Second
)

// linkHeard reports whether the primary's status ps says that its
// secondary takes its record sets now: its link connected, and the
// secondary's last acknowledgement on it recent. A link cut by a
// partition that drops every packet stays "connected" for the primary's
// silence time, while the other site may have been promoted since; its
// acknowledgements stop. The age is the primary's own reading of its
// clock, whatever this host's clock says.
//
// A daemon from before link_ack_age_seconds is judged by its lag, the age
// of the time through which its secondary journaled: a backlog that makes
// it long (a burst, a slow link) only makes the secondary be asked longer,
// and a silent one named.
func linkHeard(ps control.Status, interval time.Duration) bool {
	within := max(linkHeardFloor, linkHeardWithin*interval).Seconds()
	if ps.Link != "connected" {
		return false
	}
	if ps.LinkAckAgeSeconds != nil {
		return *ps.LinkAckAgeSeconds <= within
	}
	if ps.LagSeconds == nil {
		return false
	}
	lag := *ps.LagSeconds
	// A resync holds the consistency time while the secondary journals
	// and acknowledges what follows: the journaled time is the one heard.
	if ps.JournaledTime != "" {
		ct, err1 := time.Parse(time.RFC3339Nano, ps.ConsistencyTime)
		jt, err2 := time.Parse(time.RFC3339Nano, ps.JournaledTime)
		if err1 == nil && err2 == nil && jt.After(ct) {
			lag -= jt.Sub(ct).Seconds()
		}
	}
	return lag <= within
}

// noStatus is the refusal of an operation whose site at at (what names
// it) gave no status within the status wait: sent, the operation would
// wait up to --timeout (minutes) on a site that does not answer, or fail
// as the status did, and leave the operator to find out what it did. also
// says why no other site takes it; byAddr, that --addr named the site.
func noStatus(what string, at control.Endpoint, err error, also string, byAddr bool) error {
	how := "gave no status"
	var nerr net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()) {
		how = "did not answer its status in time"
	}
	if also != "" {
		also = ", and " + also
	}
	hint := fmt.Sprintf("check that the site runs there (duplex status --addr %s), or name the site that takes the operation with --addr", at)
	if byAddr {
		hint = fmt.Sprintf("check the address, and that the site runs there (duplex status --addr %s)", at)
	}
	return fmt.Errorf("%s %s (%w)%s, so nothing was sent: %s", what, how, err, also, hint)
}

// runsAsNoPrimary reports whether a site whose status is st runs as
// another role than the primary: it has no pairs, and refuses a pair
// operation without saying which site it is. One that starts says so
// itself.
func runsAsNoPrimary(st control.Status) bool {
	return st.Starting == nil && st.Role != "" && st.Role != "primary"
}

// sameSession refuses the site (what names it) whose status st names a
// session other than the config's. A secondary that reopens after a disk
// fault names no session until it reads its state; it is no primary.
func sameSession(what string, st control.Status, session string) error {
	if st.Session == "" || st.Session == session {
		return nil
	}
	return fmt.Errorf("%s answers as the %s of session %q, not of session %q: "+
		"check the config's control addresses, or name the session's site that takes the operation with --addr", what, st.Role, st.Session, session)
}

// notGone says how a status call's error shows that a site may still
// run at the address, "" when it says that none does: the host or the
// network refused the connection, or the name is missing wherever it is
// looked up. A timeout says nothing of the kind, nor does a dial that
// fails otherwise (no address to dial from), and any other error came
// from something that answered (a TLS handshake, an HTTP status, a body).
func notGone(ctx context.Context, err error) string {
	var dns *net.DNSError
	var nerr net.Error
	switch {
	case errors.As(err, &dns):
		if !dns.IsNotFound {
			return fmt.Sprintf("could not be looked up for now (%v)", err)
		}
		// Go's resolver tries a name under each search domain and as
		// it is, and says the name as it is is missing though a lookup
		// under a search domain, which may be the one that names the
		// primary, failed for now (SERVFAIL, a timeout): looked up
		// again failing on the first such error, it is gone only if
		// every lookup finds it missing.
		_, lerr := (&net.Resolver{StrictErrors: true}).LookupHost(ctx, dns.Name)
		if errors.As(lerr, &dns) && dns.IsNotFound {
			return ""
		}
		if lerr == nil {
			return fmt.Sprintf("did not resolve (%v), and resolves now", err)
		}
		return fmt.Sprintf("could not be looked up for now (%v)", lerr)
	case errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
		return ""
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &nerr) && nerr.Timeout()):
		return fmt.Sprintf("did not answer within %s (%v)", pairStatusWait, err)
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return fmt.Sprintf("could not be reached from this host (%v)", err)
	}
	return fmt.Sprintf("answered, but not with its status (%v)", err)
}

// notPromoted says why the config's secondary does not take the
// operation.
func notPromoted(st control.Status, err error, session string) string {
	switch {
	case err != nil:
		return fmt.Sprintf("does not answer (%v)", err)
	case st.Session != session:
		return fmt.Sprintf("answers for session %q", st.Session)
	case st.Starting != nil:
		return "is starting as the " + st.Role
	case st.Role == "primary":
		return "answers as a primary never promoted"
	}
	return "answers as the " + st.Role
}

// notPrimary says why the config's primary does not take the operation.
func notPrimary(st control.Status, err error) string {
	if err != nil {
		return "does not answer"
	}
	return "answers as the " + st.Role
}

// named returns the endpoint --addr names: with --ca, checked against that
// CA; else, where it is one of the config's control addresses, with that
// site's TLS settings. A site of the config named by --addr with --ca is
// checked for the name the config gives (control_tls_server_name), as
// without: --ca stands for the CA alone.
func (f pairFlags) named(ctx context.Context, cfg *config.Config) (control.Endpoint, error) {
	var tlsConf *tls.Config
	if *f.ca != "" {
		pool, err := loadCAFile(f.syn.path, *f.ca)
		if err != nil {
			return control.Endpoint{}, err
		}
		tlsConf = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	at, err := control.ParseEndpoint(*f.addr, tlsConf)
	if err != nil {
		return control.Endpoint{}, f.usageErrorf("--addr: %v", err)
	}
	others := []struct{ key, addr string }{
		{"primary.nbd", cfg.Primary.NBD}, {"secondary.nbd", cfg.Secondary.NBD}, {"secondary.drill_nbd", cfg.Secondary.DrillNBD},
		{"secondary.listen", cfg.Secondary.Listen}, {"primary.secondary", cfg.Primary.Secondary}, {"primary.listen", cfg.Primary.Listen},
	}
	roles := []string{"primary", "secondary"}
	addrs := []string{cfg.Primary.Control, cfg.Secondary.Control}
	for _, o := range others {
		addrs = append(addrs, o.addr)
	}
	same := sameAddrs(ctx, at.Addr, addrs)
	for i, o := range others {
		// Sent there, the operation fails on whatever answers (an NBD
		// server's greeting, a link's reset), which does not say that
		// the address is of another kind.
		if same[len(roles)+i] {
			return control.Endpoint{}, f.usageErrorf("--addr %s is the config's %s, not a control address: the control addresses are %s",
				*f.addr, o.key, controlAddrs(cfg))
		}
	}
	// The site's URL as the status page and the errors name it is the
	// config's site too: checked against the system's roots instead of
	// the CA the config names, it would be refused as signed by an
	// unknown authority. A scheme that says otherwise than the config
	// is taken as given, and the site says what it serves.
	bare := !strings.Contains(*f.addr, "://")
	for i, role := range roles {
		if !same[i] {
			continue
		}
		if *f.ca != "" {
			s, _, err := cfg.Site(role)
			if err != nil {
				return control.Endpoint{}, err
			}
			if s.ControlTLSServerName != "" {
				at.TLS.ServerName = s.ControlTLSServerName
			}
			return at, nil
		}
		site, err := controlOf(cfg, role)
		if err != nil {
			return control.Endpoint{}, err
		}
		if bare || (site.TLS != nil) == (at.TLS != nil) {
			return site, nil
		}
	}
	return at, nil
}

// addrLookupWait bounds the lookups that tell whether --addr names one of
// the config's addresses: a resolver that does not answer must not hold
// the operation up, and a name not resolved in time is taken as another.
var addrLookupWait = 2 * time.Second

// lookupAddrs resolves a host name for sameAddrs.
var lookupAddrs = net.DefaultResolver.LookupNetIP

// sameAddrs reports for each of addrs whether it is the address at
// ("host:port"): the same port, and the same host or hosts that resolve to
// a common IP address (localhost and 127.0.0.1). Only the names of hosts
// on at's port are looked up, all at once, within addrLookupWait; one that
// fails to resolve matches only itself, as written.
func sameAddrs(ctx context.Context, at string, addrs []string) []bool {
	same := make([]bool, len(addrs))
	host, port, err := net.SplitHostPort(at)
	if err != nil {
		return same
	}
	names := []string{host}
	for _, a := range addrs {
		if h, p, err := net.SplitHostPort(a); err == nil && samePort(p, port) && !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, addrLookupWait)
	defer cancel()
	hosts := make([][]netip.Addr, len(names))
	var wg sync.WaitGroup
	for i, h := range names {
		if ip, err := netip.ParseAddr(h); err == nil {
			hosts[i] = []netip.Addr{ip.Unmap()}
			continue
		}
		if h == "" {
			// An address to listen on (":7402") names every host's,
			// none in particular.
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ips, err := lookupAddrs(ctx, "ip", h)
			if err != nil {
				return
			}
			for j := range ips {
				ips[j] = ips[j].Unmap()
			}
			hosts[i] = ips
		}()
	}
	wg.Wait()
	ipsOf := func(h string) []netip.Addr { return hosts[slices.Index(names, h)] }
	for i, a := range addrs {
		h, p, err := net.SplitHostPort(a)
		if err != nil || !samePort(p, port) {
			continue
		}
		same[i] = h == host || slices.ContainsFunc(ipsOf(h), func(ip netip.Addr) bool { return slices.Contains(ipsOf(host), ip) })
	}
	return same
}

// samePort reports whether two ports as written are one: "07401" is 7401.
func samePort(a, b string) bool {
	if a == b {
		return true
	}
	x, errx := strconv.ParseUint(a, 10, 16)
	y, erry := strconv.ParseUint(b, 10, 16)
	return errx == nil && erry == nil && x == y
}

// controlAddrs names the config's control addresses, for an error that
// says which to give.
func controlAddrs(cfg *config.Config) string {
	var out []string
	for _, c := range []struct{ key, addr string }{{"primary.control", cfg.Primary.Control}, {"secondary.control", cfg.Secondary.Control}} {
		if c.addr != "" {
			out = append(out, c.key+" "+c.addr)
		}
	}
	if len(out) == 0 {
		return "not in the config"
	}
	return strings.Join(out, " and ")
}
