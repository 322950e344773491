package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Why a request to etcd failed: the etcd client answers a request it could
// not send with a bare "context deadline exceeded" (gRPC waits for a
// connection until the deadline, and the client drops gRPC's reason). So
// the store dials for gRPC itself and records, per endpoint, how the last
// connection attempt ended (dialLog): a request that times out is then
// reported with each endpoint and why it could not be used (connection
// refused, no such host, timeout, TLS handshake error), at no extra network
// cost and without delaying the caller. CheckEndpoints dials every endpoint
// once on demand (the agent at start).

// EndpointError says why one etcd endpoint could not be used.
type EndpointError struct {
	// Endpoint is the URL as configured ("http://10.0.0.1:2379").
	Endpoint string
	// Err is the dial or TLS handshake error.
	Err error
}

// Error returns "ENDPOINT: ERR (HINT)".
func (e *EndpointError) Error() string { return e.Endpoint + ": " + explain(e.Err) }

// Unwrap returns Err.
func (e *EndpointError) Unwrap() error { return e.Err }

// handshakeError is a failed TLS handshake, told apart from dial errors.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return "TLS handshake: " + e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// explain returns err with a hint saying what it usually means.
func explain(err error) string {
	msg := err.Error()
	var hs *handshakeError
	var dns *net.DNSError
	var netErr net.Error
	switch {
	case errors.As(err, &hs):
		return msg + " (" + explainTLS(hs.err) + ")"
	case errors.Is(err, syscall.ECONNREFUSED):
		return msg + " (nothing listens there: is etcd running, and is this its client port?)"
	case errors.As(err, &dns) && dns.IsNotFound:
		return msg + " (no such host: is the host name right?)"
	case errors.As(err, &dns):
		return msg + " (the host name could not be resolved)"
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return msg + " (timeout: the host is down, a firewall drops the packets, or the address is wrong)"
	}
	return msg
}

// explainTLS says what a TLS handshake error usually means.
func explainTLS(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var record tls.RecordHeaderError
	var alert tls.AlertError
	switch {
	case errors.As(err, &record), errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return "the endpoint does not speak TLS: use http:// for a plaintext etcd"
	case errors.As(err, &unknownCA):
		return "set etcd.tls.ca_file (hamgrctl: --etcd-cacert) to the CA that signed etcd's certificate"
	case errors.As(err, &hostname):
		return "etcd's certificate does not name this host: use a host name it names"
	case errors.As(err, &alert):
		return "the server refused the handshake: does it want a client certificate (etcd.tls.cert_file and key_file, hamgrctl: --etcd-cert and --etcd-key)?"
	case errors.Is(err, context.DeadlineExceeded):
		return "no TLS answer in time: does the endpoint serve TLS?"
	}
	return "check etcd.tls and the endpoint's scheme"
}

// dialState is how the connection attempts to one address went.
type dialState struct {
	phase   string    // "dialing", "handshaking" (TLS) or "" (no attempt in flight)
	since   time.Time // of the attempt in flight
	ended   time.Time // last attempt ended (zero: none ended yet)
	err     error     // how it ended: nil connected
	lastErr error     // the last failed attempt's error, kept across retries
	errAt   time.Time
}

// dialLog dials etcd for gRPC and records the outcome per address.
type dialLog struct {
	timeout   time.Duration
	endpoints []string // as configured
	tls       bool     // handshakes are recorded too (set by dialOptions)
	mu        sync.Mutex
	state     map[string]*dialState // by gRPC address
	remote    map[string]string     // a connection's remote address -> dialed address
}

func newDialLog(endpoints []string, timeout time.Duration) *dialLog {
	return &dialLog{timeout: timeout, endpoints: endpoints, state: map[string]*dialState{}, remote: map[string]string{}}
}

// dialAddress is the address gRPC dials for endpoint ep (the etcd client's
// translation: the URL's host:port, or the endpoint as it is).
func dialAddress(ep string) string {
	if u, err := url.Parse(ep); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		return u.Host
	}
	return ep
}

// dialOptions returns the gRPC options that route dials (and, for an
// all-https endpoint list, TLS handshakes) through d. With an HTTPS proxy in
// the environment nothing is changed: gRPC's own dialer honours the proxy,
// a custom one would not.
func (d *dialLog) dialOptions(tc *tls.Config) []grpc.DialOption {
	if os.Getenv("HTTPS_PROXY") != "" || os.Getenv("https_proxy") != "" {
		return nil
	}
	opts := []grpc.DialOption{grpc.WithContextDialer(d.dial)}
	allTLS := len(d.endpoints) > 0
	for _, ep := range d.endpoints {
		allTLS = allTLS && strings.HasPrefix(ep, "https://")
	}
	if allTLS {
		// The same credentials the etcd client builds for https endpoints
		// (grpc credentials.NewTLS of the configured tls.Config), recording
		// handshake failures.
		d.tls = true
		opts = append(opts, grpc.WithTransportCredentials(&recordingCreds{TransportCredentials: credentials.NewTLS(tc), log: d}))
	}
	return opts
}

// dial is the gRPC context dialer: a TCP (or unix socket) dial bounded by
// ctx and the dial timeout, with TCP keepalive at the OS defaults like
// gRPC's own dialer.
func (d *dialLog) dial(ctx context.Context, addr string) (net.Conn, error) {
	d.record(addr, "dialing", nil)
	network, address := "tcp", addr
	if rest, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, address = "unix", strings.TrimPrefix(rest, "//")
	}
	nd := net.Dialer{Timeout: d.timeout, KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}}
	conn, err := nd.DialContext(ctx, network, address)
	switch {
	case err != nil:
		d.record(addr, "", err)
	case d.tls:
		d.mu.Lock()
		d.remote[conn.RemoteAddr().String()] = addr
		d.mu.Unlock()
		d.record(addr, "handshaking", nil)
	default:
		d.record(addr, "", nil)
	}
	return conn, err
}

// record notes that an attempt on addr entered phase ("dialing",
// "handshaking"), or ended ("") with err.
func (d *dialLog) record(addr, phase string, err error) {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.state[addr]
	if st == nil {
		st = &dialState{}
		d.state[addr] = st
	}
	switch {
	case phase == "dialing":
		st.phase, st.since = phase, now
	case phase != "":
		st.phase = phase
	default:
		st.phase, st.ended, st.err = "", now, err
		if err != nil {
			st.lastErr, st.errAt = err, now
		}
	}
}

// handshake records a TLS handshake's outcome on raw as its address's.
func (d *dialLog) handshake(raw net.Conn, err error) {
	if raw == nil || raw.RemoteAddr() == nil {
		return
	}
	d.mu.Lock()
	addr, ok := d.remote[raw.RemoteAddr().String()]
	delete(d.remote, raw.RemoteAddr().String())
	d.mu.Unlock()
	if !ok {
		return
	}
	if err != nil {
		err = &handshakeError{err: err}
	}
	d.record(addr, "", err)
}

// report says, for every endpoint, how the connection attempts to it
// went: "http://a:2379: dial tcp ...: connection refused (...), 1.2s ago; ...".
func (d *dialLog) report() string {
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	parts := make([]string, 0, len(d.endpoints))
	for _, ep := range d.endpoints {
		parts = append(parts, ep+": "+d.state[dialAddress(ep)].describe(now))
	}
	return strings.Join(parts, "; ")
}

// describe says how the attempts went, as of now. A failure is told
// before a retry in flight, since gRPC retries a refused connection at
// once and the retry says nothing yet.
func (st *dialState) describe(now time.Time) string {
	ago := func(t time.Time) string { return now.Sub(t).Round(time.Millisecond).String() }
	switch {
	case st == nil:
		return "no connection attempt yet"
	case st.phase != "" && st.lastErr != nil:
		return fmt.Sprintf("%s, %s ago; retrying for %s", explain(st.lastErr), ago(st.errAt), ago(st.since))
	case st.phase == "handshaking":
		return fmt.Sprintf("TCP connected, TLS handshake under way for %s", ago(st.since))
	case st.phase == "dialing" && now.Sub(st.since) < time.Second:
		return fmt.Sprintf("first connection attempt under way for %s", ago(st.since))
	case st.phase == "dialing":
		return fmt.Sprintf("connecting for %s without an answer (the host is down, a firewall drops the packets, or the address is wrong)", ago(st.since))
	case st.err != nil:
		return fmt.Sprintf("%s, %s ago", explain(st.err), ago(st.ended))
	}
	return fmt.Sprintf("connected %s ago, but no answer in time (a network that drops packets, an overloaded etcd, or one without a quorum)", ago(st.ended))
}

// unreachable reports whether err is how the etcd client fails a request
// it could not get answered: a deadline, or gRPC's Unavailable.
func unreachable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.Unavailable
}

// recordingCreds are TLS transport credentials that record each handshake's
// outcome in log.
type recordingCreds struct {
	credentials.TransportCredentials
	log *dialLog
}

// ClientHandshake does the TLS handshake and records how it ended.
func (c *recordingCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	c.log.handshake(raw, err)
	return conn, info, err
}

// Clone returns a copy recording into the same log.
func (c *recordingCreds) Clone() credentials.TransportCredentials {
	return &recordingCreds{TransportCredentials: c.TransportCredentials.Clone(), log: c.log}
}

// CheckEndpoints dials every endpoint once, concurrently, each bounded by
// ctx and the dial timeout: a TCP connection and, for https:// endpoints,
// a TLS handshake with the store's TLS configuration. It returns nil when
// every endpoint answered, or one *EndpointError per endpoint that did not,
// joined with errors.Join. It checks reachability only, not that etcd
// serves there (a request does that).
func (s *Store) CheckEndpoints(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.DialTimeout)
	defer cancel()
	errs := make([]error, len(s.cfg.Endpoints))
	var wg sync.WaitGroup
	for i, ep := range s.cfg.Endpoints {
		wg.Go(func() {
			if err := probe(ctx, ep, s.cfg.TLS); err != nil {
				errs[i] = &EndpointError{Endpoint: ep, Err: err}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// probe dials one endpoint and, for https, does the TLS handshake.
func probe(ctx context.Context, ep string, tc *tls.Config) error {
	addr := dialAddress(ep)
	network := "tcp"
	if rest, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", strings.TrimPrefix(rest, "//")
	}
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if !strings.HasPrefix(ep, "https://") {
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tc != nil {
		cfg = tc.Clone()
	}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	cfg.NextProtos = []string{"h2"}
	if err := tls.Client(conn, cfg).HandshakeContext(ctx); err != nil {
		return &handshakeError{err: err}
	}
	return nil
}
