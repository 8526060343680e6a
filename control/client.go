package control

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Endpoint is a site's control address as a client reaches it: host:port,
// and the TLS the client checks the site's certificate with (nil: plain
// HTTP).
type Endpoint struct {
	Addr string
	TLS  *tls.Config
	// Session, if set, is the session the caller takes the site to be of:
	// sent with every call that changes the site's state (SessionHeader),
	// it has the site refuse the call if it runs for another. A status
	// asked first cannot: the site may not answer it in time, and what
	// answers at the address may change before the call.
	Session string
}

// String is the endpoint's URL, "https://host:port" or "http://host:port",
// as errors name it.
func (e Endpoint) String() string { return e.url("") }

func (e Endpoint) url(path string) string {
	if e.TLS != nil {
		return "https://" + e.Addr + path
	}
	return "http://" + e.Addr + path
}

// ErrNBDAddress is wrapped by the error of a call sent to an address where
// an NBD server answers: a site's NBD export address mistaken for its
// control address.
var ErrNBDAddress = errors.New("is an NBD export address, not a control address")

// ErrWrongScheme is wrapped by the error of a call sent over plain HTTP to
// a site that serves HTTPS only, or over HTTPS to one that serves plain
// HTTP: the address given with the wrong scheme.
var ErrWrongScheme = errors.New("the wrong scheme for the site")

// addrError is an error that says in its own words what answered at an
// address, and wraps the kind of mistake it is (ErrWrongScheme).
type addrError struct {
	msg  string
	kind error
}

func (e *addrError) Error() string { return e.msg }
func (e *addrError) Unwrap() error { return e.kind }

// ParseEndpoint reads a control address given on the command line:
// host:port, or a URL (http://host:port or https://host:port, a trailing "/"
// allowed, as a browser shows the status page's). An https URL gets tlsConf,
// or the system's roots when it is nil; tlsConf with a bare host:port means
// https too.
func ParseEndpoint(s string, tlsConf *tls.Config) (Endpoint, error) {
	if !strings.Contains(s, "://") {
		_, port, err := net.SplitHostPort(s)
		if err != nil || port == "" {
			return Endpoint{}, fmt.Errorf("%q is neither host:port nor a URL: want e.g. 127.0.0.1:7401 or https://10.1.2.3:7401", s)
		}
		if err := checkPort(s, port); err != nil {
			return Endpoint{}, err
		}
		return Endpoint{Addr: s, TLS: tlsConf}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Endpoint{}, err
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil || u.Port() == "" {
		return Endpoint{}, fmt.Errorf("%q: want the control address's URL with its port, e.g. http://127.0.0.1:7401 or https://10.1.2.3:7401", s)
	}
	if err := checkPort(s, u.Port()); err != nil {
		return Endpoint{}, err
	}
	switch u.Scheme {
	case "http":
		if tlsConf != nil {
			return Endpoint{}, fmt.Errorf("%q is plain HTTP: a CA to check the site's certificate with needs an https:// URL", s)
		}
		return Endpoint{Addr: u.Host}, nil
	case "https":
		if tlsConf == nil {
			tlsConf = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		return Endpoint{Addr: u.Host, TLS: tlsConf}, nil
	}
	return Endpoint{}, fmt.Errorf("%q: the scheme is %q, want http or https", s, u.Scheme)
}

// checkPort refuses a port of the address s that no connection can be
// made to: the dial would fail with "invalid port", or be refused at port
// 0, which reads as the site's failure rather than the address's. A
// service's name ("http") is refused too: the dial would take it, but the
// request's URL takes a port of digits only.
func checkPort(s, port string) error {
	n, err := strconv.ParseUint(port, 10, 64)
	switch {
	case err != nil:
		return fmt.Errorf("%q: port %q is not a number: want 1 to 65535", s, port)
	case n == 0 || n > 65535:
		return fmt.Errorf("%q: port %s: want 1 to 65535", s, port)
	}
	return nil
}

// do sends req, saying in the error why a TLS handshake or a plain request
// failed where the cause is the client's setting, not the site.
func (e Endpoint) do(req *http.Request) (*http.Response, error) {
	client := plainClient
	if e.TLS != nil {
		// One connection per call: the commands make a few calls each.
		t := plainClient.Transport.(*http.Transport).Clone()
		t.TLSClientConfig, t.DisableKeepAlives = e.TLS, true
		client = &http.Client{Transport: t}
	}
	resp, err := client.Do(req)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		// Every caller names what it called, and where: the request's
		// method and URL would say it again.
		err = ue.Err
	}
	var unknownCA x509.UnknownAuthorityError
	var wrongName x509.HostnameError
	var notTLS tls.RecordHeaderError
	switch {
	case errors.As(err, &unknownCA):
		return nil, fmt.Errorf("%w (the site's control certificate is not signed by the CA this client checks it against: control_tls_ca in the config, or --ca)", err)
	case errors.As(err, &wrongName):
		return nil, fmt.Errorf("%w (set control_tls_server_name to a name the site's control certificate holds)", err)
	case err != nil && e.TLS != nil && strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		// Neither has the HTTP client an error of its own kind for it.
		return nil, &addrError{fmt.Sprintf("%s serves plain HTTP, not HTTPS: use http://%s, without --ca "+
			"(a site serves HTTPS once its config sets control_tls_cert)", e.Addr, e.Addr), ErrWrongScheme}
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return nil, e.resetBy(req, err)
	case err != nil && strings.Contains(err.Error(), `malformed HTTP response "NBDMAGIC`),
		errors.As(err, &notTLS) && string(notTLS.RecordHeader[:]) == "NBDMA":
		// The HTTP client has no error of its own kind for it; what
		// answered is plain in the response's first bytes.
		return nil, fmt.Errorf("%s %w (it answered with NBD's greeting): a site's control address is its config's primary.control or secondary.control", e.Addr, ErrNBDAddress)
	case err != nil:
		return nil, err
	}
	if e.TLS == nil && resp.StatusCode == http.StatusBadRequest && resp.Header.Get("Content-Type") == "" {
		// Go's HTTPS server answers a plain request so, with no type.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if strings.Contains(string(b), "HTTPS server") {
			return nil, &addrError{fmt.Sprintf("%s serves HTTPS only: use https://%s (the config's control_tls_cert makes its clients use it)", e, e.Addr), ErrWrongScheme}
		}
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
	}
	return resp, nil
}

// resetBy is the error of call req, whose connection the site reset or
// closed before it answered (err). A link address resets every call; a
// control address resets or closes one only when the site stops, or
// starts again, under it: a site killed while it serves a call, the call
// read whole, closes the connection (nothing left unread to reset it). A
// second look, a status asked once more, tells them apart. Only the first
// error is wrapped: the second look's (a refused dial) must not read as
// the call's own.
func (e Endpoint) resetBy(req *http.Request, err error) error {
	return &cutMidCall{e.cutBy(req, err)}
}

// cutMidCall is resetBy's error: what it says of a call cut under way
// stands whatever happened to the caller's deadline meanwhile (the second
// look may have run it out), where a call that ran out unanswered would
// be said not to have answered in time, its effect not a word.
type cutMidCall struct{ err error }

func (e *cutMidCall) Error() string { return e.err.Error() }
func (e *cutMidCall) Unwrap() error { return e.err }

// cutBy words the error resetBy returns.
func (e Endpoint) cutBy(req *http.Request, err error) error {
	cut := "reset the connection"
	if !errors.Is(err, syscall.ECONNRESET) {
		cut = "closed the connection without an answer"
	}
	took := ""
	if req.Method != http.MethodGet {
		took = "; whether it took effect is not known: duplex status says what the site holds"
	}
	ctx, cancel := context.WithTimeout(req.Context(), 3*time.Second)
	defer cancel()
	again, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.url("/v1/status"), nil)
	t := plainClient.Transport.(*http.Transport).Clone()
	t.TLSClientConfig, t.DisableKeepAlives = e.TLS, true
	resp, perr := (&http.Client{Transport: t}).Do(again)
	switch {
	case perr == nil:
		resp.Body.Close()
		return fmt.Errorf("%s %s after the call was sent (%w), and answers HTTP now: "+
			"the site may have stopped and started again mid-call%s", e.Addr, cut, err, took)
	case errors.Is(perr, syscall.ECONNREFUSED):
		return fmt.Errorf("%s %s after the call was sent (%w), and nothing listens there now: "+
			"the site may have stopped mid-call%s", e.Addr, cut, err, took)
	case errors.Is(perr, syscall.ECONNRESET) && errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("%s reset the connection without an HTTP answer (%w), and resets a second call too: a control address answers HTTP; "+
			"a site's link address, the config's secondary.listen, resets what is not its own protocol", e.Addr, err)
	case errors.Is(perr, syscall.ECONNRESET), errors.Is(perr, io.EOF), errors.Is(perr, io.ErrUnexpectedEOF):
		return fmt.Errorf("%s %s (%w), and a second call too: a control address answers HTTP "+
			"(a site's control address is its config's primary.control or secondary.control)%s", e.Addr, cut, err, took)
	}
	return fmt.Errorf("%s %s after the call was sent (%w): the site may have stopped mid-call%s", e.Addr, cut, err, took)
}

// plainClient is the HTTP client of the calls: Go's default, its
// connections read only once written to (writeFirst).
var plainClient = func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &writeFirst{Conn: c, written: make(chan struct{})}, nil
	}
	return &http.Client{Transport: t}
}()

// writeFirst is a client's connection whose reads return nothing read
// before its first write until that write. A server that speaks first, as
// an NBD server greets, would otherwise be read before the request is
// written: the HTTP client then drops the connection as an idle one that
// answered unasked, logs so on stderr, and fails the call saying nothing
// of what answered; held until the request is written, the greeting is the
// response, malformed, that do names. A close or an error before the first
// write is returned at once: a connection dialed for a call that another
// served waits in the pool unwritten, and the site closes it when no
// request comes (its ReadHeaderTimeout); unseen, it would be sent on, and
// a call not sent again (a POST) would fail.
type writeFirst struct {
	net.Conn
	once    sync.Once
	written chan struct{}
	wrote   atomic.Bool
}

func (c *writeFirst) Read(p []byte) (int, error) {
	select {
	case <-c.written:
		return c.Conn.Read(p)
	default:
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		<-c.written
		if !c.wrote.Load() {
			// Closed unwritten: what came is nobody's answer.
			return 0, net.ErrClosed
		}
	}
	return n, err
}

func (c *writeFirst) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.wrote.Store(true)
	c.once.Do(func() { close(c.written) })
	return n, err
}

func (c *writeFirst) Close() error {
	c.once.Do(func() { close(c.written) })
	return c.Conn.Close()
}
