package etcd_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/dcs/etcd"
)

// closedPort returns a loopback address where nothing listens: a port the
// kernel just gave out and that was closed again.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func storeOn(t *testing.T, tc *tls.Config, endpoints ...string) *etcd.Store {
	t.Helper()
	s, err := etcd.New(etcd.Options{Endpoints: endpoints, Cluster: newCluster(), DialTimeout: 2 * time.Second,
		RequestTimeout: time.Second, TLS: tc, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A request to etcd on a closed port fails at its deadline with an error
// that names every endpoint and its dial error, not a bare "context
// deadline exceeded"; CheckEndpoints says the same at once.
func TestUnreachableEndpointsNamed(t *testing.T) {
	a, b := closedPort(t), closedPort(t)
	epA, epB := "http://"+a, "http://"+b
	s := storeOn(t, nil, epA, epB)
	_, err := s.Load(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Load on closed ports: %v, want a deadline error", err)
	}
	t.Logf("Load: %v", err)
	for _, want := range []string{
		epA + ": dial tcp " + a + ": connect: connection refused (nothing listens there: is etcd running, and is this its client port?)",
		epB + ": dial tcp " + b + ": connect: connection refused (nothing listens there",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error lacks %q:\n%v", want, err)
		}
	}
	if err := s.KeepAlive(context.Background()); err == nil || strings.Contains(err.Error(), "endpoints:") {
		t.Errorf("KeepAlive without a lease fails before any request, with nothing to diagnose: %v", err)
	}

	start := time.Now()
	err = s.CheckEndpoints(context.Background())
	var ee *etcd.EndpointError
	if !errors.As(err, &ee) || !errors.Is(err, syscall.ECONNREFUSED) || strings.Count(err.Error(), "\n") != 1 ||
		!strings.HasPrefix(err.Error(), epA+": dial tcp "+a+": connect: connection refused") || !strings.Contains(err.Error(), epB+": ") {
		t.Errorf("CheckEndpoints: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("CheckEndpoints on closed loopback ports took %v", took)
	}
}

// The success path against a real etcd: requests work, CheckEndpoints is
// nil, and with one dead endpoint in the list requests still work while
// CheckEndpoints names only the dead one.
func TestReachableEndpoints(t *testing.T) {
	real := server.Endpoints()[0]
	s := storeOn(t, nil, real)
	if _, err := s.Load(testCtx(t)); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if err := s.CheckEndpoints(testCtx(t)); err != nil {
		t.Errorf("CheckEndpoints on a live etcd: %v", err)
	}
	dead := "http://" + closedPort(t)
	mixed := storeOn(t, nil, dead, real)
	if _, err := mixed.Load(testCtx(t)); err != nil {
		t.Fatalf("Load with one live endpoint of two: %v", err)
	}
	err := mixed.CheckEndpoints(testCtx(t))
	if err == nil || strings.Contains(err.Error(), real) || !strings.HasPrefix(err.Error(), dead+": ") || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("CheckEndpoints with one dead endpoint: %v", err)
	}
}

// https:// to etcd's plaintext port: the TLS handshake error is named.
func TestTLSToPlaintextNamed(t *testing.T) {
	addr := strings.TrimPrefix(server.Endpoints()[0], "http://")
	ep := "https://" + addr
	s := storeOn(t, &tls.Config{MinVersion: tls.VersionTLS12}, ep)
	_, err := s.Load(context.Background())
	want := "(the endpoint does not speak TLS: use http:// for a plaintext etcd)"
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), ep+": TLS handshake: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("Load over TLS to a plaintext port: %v", err)
	}
	t.Logf("Load: %v", err)
	if err := s.CheckEndpoints(testCtx(t)); err == nil || !strings.HasPrefix(err.Error(), ep+": TLS handshake: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckEndpoints: %v", err)
	}
}

// A TLS server whose certificate no trusted CA signed: the x509 error and
// the fix (etcd.tls.ca_file) are named.
func TestTLSUnknownAuthorityNamed(t *testing.T) {
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	ep := "https://" + l.Addr().String()
	s := storeOn(t, &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: x509.NewCertPool()}, ep)
	_, err = s.Load(context.Background())
	want := "x509: certificate signed by unknown authority (set etcd.tls.ca_file (hamgrctl: --etcd-cacert) to the CA that signed etcd's certificate)"
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), ep+": TLS handshake: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("Load against an untrusted certificate: %v", err)
	}
	t.Logf("Load: %v", err)
	err = s.CheckEndpoints(testCtx(t))
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckEndpoints: %v", err)
	}
}

// A port that accepts connections but never answers: reported as
// connected without an answer (not as refused).
func TestSilentEndpointNamed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // never accepted: the kernel completes the connection, nobody answers
	ep := "http://" + l.Addr().String()
	s := storeOn(t, nil, ep)
	_, err = s.Load(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), ep+": connected ") ||
		!strings.Contains(err.Error(), "but no answer in time") || strings.Contains(err.Error(), "refused") {
		t.Errorf("Load against a silent port: %v", err)
	}
	if err := s.CheckEndpoints(testCtx(t)); err != nil {
		t.Errorf("CheckEndpoints checks reachability only, and the port is reachable: %v", err)
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
