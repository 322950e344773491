package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Each kind of dial and handshake error gets its hint. No such host and
// a dial timeout are not produced for real here (that needs DNS or a
// route off this machine), so they are built as the net package builds them.
func TestExplain(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	timeout := &net.OpError{Op: "dial", Net: "tcp", Err: &timeoutErr{}}
	tests := []struct {
		err  error
		want string
	}{
		{refused, "(nothing listens there: is etcd running, and is this its client port?)"},
		{&net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "etcd1.example", IsNotFound: true}},
			"lookup etcd1.example: no such host (no such host: is the host name right?)"},
		{&net.DNSError{Err: "server misbehaving", Name: "etcd1.example", IsTemporary: true}, "(the host name could not be resolved)"},
		{timeout, "(timeout: the host is down, a firewall drops the packets, or the address is wrong)"},
		{fmt.Errorf("dial: %w", context.DeadlineExceeded), "(timeout:"},
		{&handshakeError{err: tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}}, "(the endpoint does not speak TLS: use http:// for a plaintext etcd)"},
		{&handshakeError{err: io.EOF}, "TLS handshake: EOF (the endpoint does not speak TLS"},
		{&handshakeError{err: x509.UnknownAuthorityError{}}, "(set etcd.tls.ca_file (hamgrctl: --etcd-cacert) to the CA that signed etcd's certificate)"},
		{&handshakeError{err: x509.HostnameError{Certificate: &x509.Certificate{}, Host: "etcd1"}}, "(etcd's certificate does not name this host"},
		{&handshakeError{err: tls.AlertError(42)}, "(the server refused the handshake: does it want a client certificate"},
		{&handshakeError{err: context.DeadlineExceeded}, "(no TLS answer in time"},
		{&handshakeError{err: errors.New("odd")}, "TLS handshake: odd (check etcd.tls and the endpoint's scheme)"},
		{errors.New("something else"), "something else"},
	}
	for _, tt := range tests {
		got := explain(tt.err)
		if !strings.Contains(got, tt.want) || !strings.HasPrefix(got, tt.err.Error()) {
			t.Errorf("explain(%v) = %q, want the error and %q", tt.err, got, tt.want)
		}
	}
}

type timeoutErr struct{}

func (*timeoutErr) Error() string   { return "i/o timeout" }
func (*timeoutErr) Timeout() bool   { return true }
func (*timeoutErr) Temporary() bool { return true }

// report's states: no attempt, dialing (first, long, and a retry after a
// failure), TLS handshake under way, failed, connected.
func TestDialLogReport(t *testing.T) {
	eps := []string{"http://a:1", "http://b:2", "https://c:3", "http://d:4", "http://e:5", "http://f:6", "http://g:7"}
	d := newDialLog(eps, 0)
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	d.record("b:2", "dialing", nil)
	d.record("b:2", "", refused)
	d.record("b:2", "dialing", nil)
	d.record("c:3", "dialing", nil)
	d.record("c:3", "handshaking", nil)
	d.record("d:4", "dialing", nil)
	d.record("d:4", "", errors.New("boom"))
	d.record("e:5", "dialing", nil)
	d.record("e:5", "", errors.New("old failure"))
	d.record("e:5", "dialing", nil)
	d.record("e:5", "", nil)
	d.record("f:6", "dialing", nil)
	d.record("g:7", "dialing", nil)
	d.state["g:7"].since = time.Now().Add(-3 * time.Second)
	parts := strings.Split(d.report(), "; ")
	wants := []string{
		"http://a:1: no connection attempt yet",
		"http://b:2: dial tcp: connect: connection refused (nothing listens there: is etcd running, and is this its client port?), ",
		"retrying for ",
		"https://c:3: TCP connected, TLS handshake under way for ",
		"http://d:4: boom, ",
		"http://e:5: connected ",
		"http://f:6: first connection attempt under way for ",
		"http://g:7: connecting for 3s without an answer (the host is down",
	}
	if len(parts) != len(wants) {
		t.Fatalf("report has %d parts, want %d:\n%s", len(parts), len(wants), strings.Join(parts, "\n"))
	}
	for i, w := range wants {
		if !strings.HasPrefix(parts[i], w) {
			t.Errorf("part %d = %q, want prefix %q", i, parts[i], w)
		}
	}
	if strings.Contains(parts[5], "old failure") {
		t.Errorf("a connected endpoint still reports its old failure: %q", parts[5])
	}
}
