package api

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// serve starts s and returns a function that shuts it down and checks that
// Serve returned nil.
func serve(t *testing.T, s *Server) func() {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	return func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return after Shutdown")
		}
	}
}

// TestServerOverHTTP runs the handler behind a real listener, where net/http
// itself handles HEAD, so the wire-level answers HAProxy sees are checked.
func TestServerOverHTTP(t *testing.T) {
	s, err := Listen("127.0.0.1:0", newTestHandler(selfState(cluster.RolePrimary, true, true, false, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if _, port, _ := net.SplitHostPort(s.Addr()); port == "0" || port == "" {
		t.Fatalf("Addr %q has no real port", s.Addr())
	}
	stop := serve(t, s)
	defer stop()

	base := "http://" + s.Addr()
	getLen := int64(-1)
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/primary", 200}, {"HEAD", "/primary", 200}, {"OPTIONS", "/primary", 200},
		{"GET", "/replica", 503}, {"HEAD", "/replica", 503}, {"OPTIONS", "/replica", 503},
		{"OPTIONS", "/replica?lag=16MB", 503}, {"OPTIONS", "/replica?lag=sixteen", 400},
		{"POST", "/primary", 405}, {"GET", "/cluster", 200},
		{"OPTIONS", "/", 200}, {"HEAD", "/", 200}, {"HEAD", "/async", 503}, {"GET", "/liveness", 200},
		{"GET", "/standby-leader", 503}, {"OPTIONS", "/replica?lag=1TB", 503},
	} {
		req, _ := http.NewRequest(c.method, base+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
		if c.path == "/primary" {
			switch c.method {
			case "GET":
				getLen = int64(len(body))
				if !strings.Contains(string(body), `"name":"pg1"`) {
					t.Errorf("GET /primary body %s", body)
				}
			case "HEAD":
				if len(body) != 0 || resp.ContentLength != getLen {
					t.Errorf("HEAD /primary: body %q, Content-Length %d, want none and %d", body, resp.ContentLength, getLen)
				}
			case "OPTIONS":
				if int64(len(body)) != getLen {
					t.Errorf("OPTIONS /primary body %q", body)
				}
			}
		}
	}
}

func TestListenBusyPort(t *testing.T) {
	s, err := Listen("127.0.0.1:0", http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	if _, err := Listen(s.Addr(), http.NotFoundHandler()); err == nil || !strings.Contains(err.Error(), s.Addr()) {
		t.Errorf("second Listen on %s: %v", s.Addr(), err)
	}
}

func TestShutdownBeforeServe(t *testing.T) {
	s, err := Listen("127.0.0.1:0", http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	// The port is free again.
	s2, err := Listen(addr, http.NotFoundHandler())
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	s2.Shutdown(context.Background())
}

func TestServeTwice(t *testing.T) {
	s, err := Listen("127.0.0.1:0", http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, s)
	defer stop()
	// Wait until the first Serve is answering.
	for i := 0; ; i++ {
		resp, err := http.Get("http://" + s.Addr() + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i == 100 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Serve(); err == nil {
		t.Error("second concurrent Serve returned nil")
	}
}

func TestListenTLS(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hamgr test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)

	if _, err := ListenTLS("127.0.0.1:0", http.NotFoundHandler(), nil); err == nil {
		t.Error("nil config accepted")
	}
	if _, err := ListenTLS("127.0.0.1:0", http.NotFoundHandler(), &tls.Config{}); err == nil {
		t.Error("config without certificate accepted")
	}

	cfg := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	s, err := ListenTLS("127.0.0.1:0", newTestHandler(selfState(cluster.RoleReplica, true, false, true, 0)), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop := serve(t, s)
	defer stop()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodOptions, "https://"+s.Addr()+"/replica?lag=16MB", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("OPTIONS /replica over TLS: %d", resp.StatusCode)
	}
	// Plain HTTP to the TLS port does not get a health answer.
	if resp, err := http.Get("http://" + s.Addr() + "/replica"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP answered 200 on the TLS port")
		}
	}
}

// TestBareHTTPCheck sends the request HAProxy's bare "option httpchk" sends
// (OPTIONS / HTTP/1.0, no headers) over TCP: 200 from the primary only.
func TestBareHTTPCheck(t *testing.T) {
	for _, c := range []struct {
		name string
		st   State
		want string
	}{
		{"primary", selfState(cluster.RolePrimary, true, true, false, 0), "HTTP/1.0 200 OK"},
		{"replica", selfState(cluster.RoleReplica, true, false, true, 0), "HTTP/1.0 503 Service Unavailable"},
		{"primary without the key", selfState(cluster.RolePrimary, true, false, false, 0), "HTTP/1.0 503 Service Unavailable"},
	} {
		s, err := Listen("127.0.0.1:0", newTestHandler(c.st))
		if err != nil {
			t.Fatal(err)
		}
		stop := serve(t, s)
		conn, err := net.DialTimeout("tcp", s.Addr(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, "OPTIONS / HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		// HTTP/1.0 without keep-alive: the server closes after answering.
		b, err := io.ReadAll(conn)
		conn.Close()
		stop()
		if err != nil {
			t.Fatalf("%s: read answer: %v", c.name, err)
		}
		if line, _, _ := strings.Cut(string(b), "\r\n"); line != c.want {
			t.Errorf("%s: status line %q, want %q", c.name, line, c.want)
		}
	}
}
