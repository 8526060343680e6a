package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Explain returns err's text followed, where Go's words alone leave an
// operator guessing, by what it means for the link and what to change, in
// parentheses. Go's text is kept whole: it is what a search for the error
// finds. local is the site that met the error, "primary" (it dials) or
// "secondary" (it accepts); the words name the config keys of the link's
// TLS (tls_cert, tls_key, tls_ca, tls_server_name).
func Explain(err error, local string) string {
	if err == nil {
		return ""
	}
	if words := explain(err, local); words != "" {
		return err.Error() + " (" + words + ")"
	}
	return err.Error()
}

func explain(err error, local string) string {
	peer := "secondary"
	if local == "secondary" {
		peer = "primary"
	}
	var host x509.HostnameError
	if errors.As(err, &host) && host.Certificate != nil {
		c := host.Certificate
		if len(c.DNSNames) == 0 && len(c.IPAddresses) == 0 {
			return fmt.Sprintf("the secondary's certificate names its host only in its Common Name %q, which TLS clients no longer check: "+
				"reissue it with a subject alternative name (SAN) for %q, the name the primary checks "+
				"(tls_server_name in [primary], or else the host of primary.secondary)", c.Subject.CommonName, host.Host)
		}
		var names []string
		names = append(names, c.DNSNames...)
		for _, ip := range c.IPAddresses {
			names = append(names, ip.String())
		}
		return fmt.Sprintf("the secondary's certificate is for %s, not %q, the name the primary checks: "+
			"set tls_server_name in [primary] to one of its names, or reissue it with a subject alternative name for %q",
			strings.Join(names, ", "), host.Host, host.Host)
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return fmt.Sprintf("the %s's certificate is not signed by the CA in [%s] tls_ca", peer, local)
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			return fmt.Sprintf("the %s's certificate has expired or is not valid yet: renew it, and check both sites' clocks", peer)
		case x509.IncompatibleUsage:
			usage := "serverAuth"
			if peer == "primary" {
				usage = "clientAuth"
			}
			return fmt.Sprintf("the %s's certificate lacks the extended key usage %s", peer, usage)
		}
	}
	var header tls.RecordHeaderError
	if errors.As(err, &header) {
		return fmt.Sprintf("the %s does not speak TLS: set tls_cert, tls_key and tls_ca in [%s], or none at either site", peer, peer)
	}
	var op *net.OpError
	if RefusedTLS(err) {
		errors.As(err, &op)
		// A TLS alert: the peer refused the handshake, and its own log and
		// status say why.
		msg := op.Err.Error()
		switch {
		case strings.Contains(msg, "protocol version"):
			return "the sites share no TLS version: the link needs TLS 1.3 at both"
		case strings.Contains(msg, "certificate") || strings.Contains(msg, "access denied"):
			usage := "clientAuth"
			if local == "secondary" {
				usage = "serverAuth"
			}
			return fmt.Sprintf("the %s refused this %s's certificate (its log and status say why): "+
				"it must be signed by the CA in [%s] tls_ca, with the extended key usage %s", peer, local, peer, usage)
		}
		return fmt.Sprintf("the %s refused the TLS handshake: its log and status say why", peer)
	}
	if errors.Is(err, ErrPeerSpeaksTLS) {
		return fmt.Sprintf("the %s speaks TLS and this %s does not: set tls_cert, tls_key and tls_ca in [%s], or none at either site", peer, local, local)
	}
	if local == "primary" && strings.Contains(err.Error(), "TLS handshake") &&
		(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
		return "the secondary closed the connection in the TLS handshake: it does not speak TLS (set tls_cert, tls_key and tls_ca in [secondary]), " +
			"or its log and status say why it refused"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return fmt.Sprintf("the host %q does not resolve: check primary.secondary", dns.Name)
	}
	addr := ""
	if errors.As(err, &op) && op.Addr != nil {
		addr = op.Addr.String()
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Sprintf("nothing is listening at %s: is the secondary running, and is primary.secondary its secondary.listen?", addr)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Sprintf("no route to %s: check primary.secondary and the network between the sites", addr)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && op != nil && op.Op == "dial" {
		return fmt.Sprintf("%s does not answer: a firewall drops the connection, or primary.secondary is not the secondary's address", addr)
	}
	return ""
}

// RefusedTLS says whether err is the other site's refusal of the TLS
// handshake (an alert it sent), which names the reason better than a
// failure to write to the connection it closed.
func RefusedTLS(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "remote error"
}

// Repeats keeps an error that recurs at every retry from flooding the log:
// the first occurrence of a text is logged, and while the same text recurs
// it is logged again at most once every RepeatEvery, with how many times it
// recurred unlogged. Reset (the link came up) makes the next one new.
type Repeats struct {
	mu     sync.Mutex
	last   string
	logged time.Time
	quiet  int
}

// RepeatEvery is how often an error that keeps recurring is logged again.
const RepeatEvery = time.Minute

// ports matches the port of an address: a connection's local port is new
// at every retry, and does not make its error another.
var ports = regexp.MustCompile(`:\d+\b`)

// Log says whether to log text now, and how many times it recurred unlogged
// since it was last logged. Texts that differ only in ports are the same.
func (r *Repeats) Log(text string, now time.Time) (log bool, unlogged int) {
	text = ports.ReplaceAllString(text, ":")
	r.mu.Lock()
	defer r.mu.Unlock()
	if text != r.last || now.Sub(r.logged) >= RepeatEvery {
		unlogged = r.quiet
		if text != r.last {
			unlogged = 0
		}
		r.last, r.logged, r.quiet = text, now, 0
		return true, unlogged
	}
	r.quiet++
	return false, 0
}

// Reset forgets the last error.
func (r *Repeats) Reset() {
	r.mu.Lock()
	r.last, r.quiet = "", 0
	r.mu.Unlock()
}
