package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"testing"
	"time"
)

// echoServer echoes lines until the listener closes; it returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// roundTrip writes a line and reads it back within d.
func roundTrip(c net.Conn, r *bufio.Reader, d time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if line != "ping\n" {
		return errors.New("bad echo " + line)
	}
	return nil
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

func TestBlockUnblock(t *testing.T) {
	base := runtime.NumGoroutine()
	target := echoServer(t)
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	if p.URL() != "http://"+p.Addr() {
		t.Fatalf("URL %q vs Addr %q", p.URL(), p.Addr())
	}

	old, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldR := bufio.NewReader(old)
	if err := roundTrip(old, oldR, 2*time.Second); err != nil {
		t.Fatalf("forwarding before block: %v", err)
	}

	p.Block()
	// Existing connection: stays open, bytes vanish.
	if err := roundTrip(old, oldR, 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("existing connection while blocked: got %v, want a timeout", err)
	}
	// New connection: accepted (not refused), never answered.
	held, err := net.DialTimeout("tcp", p.Addr(), time.Second)
	if err != nil {
		t.Fatalf("dial while blocked must be accepted, got %v", err)
	}
	defer held.Close()
	if err := roundTrip(held, bufio.NewReader(held), 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection while blocked: got %v, want a timeout", err)
	}

	p.Unblock()
	// Cut connections are closed at unblock.
	_ = old.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := oldR.ReadByte(); err == nil || isTimeout(err) {
		t.Fatalf("black-holed connection after unblock: got %v, want it closed", err)
	}
	fresh, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if err := roundTrip(fresh, bufio.NewReader(fresh), 2*time.Second); err != nil {
		t.Fatalf("forwarding after unblock: %v", err)
	}

	// Close with connections (forwarded and held) open: no goroutine left.
	p.Block()
	held2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer held2.Close()
	time.Sleep(50 * time.Millisecond) // let the proxy accept it
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("dial after Close succeeded")
	}
	old.Close()
	held.Close()
	held2.Close()
	fresh.Close()
	deadline := time.Now().Add(3 * time.Second)
	for runtime.NumGoroutine() > base+2 { // +2: the echo server's accept loop and slack
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("goroutines after Close: %d (base %d)\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUnreachableTarget(t *testing.T) {
	// A target nobody listens on: the client's connection is closed, the
	// proxy stays usable and Close returns.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p, err := New(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read through proxy to dead target: got %v, want closed", err)
	}
}
