package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Limits that keep a proxy bounded.
const (
	// MaxConns is the most connections (forwarded or held) open at once;
	// further connections are closed right after accept.
	MaxConns = 256
	// DialTimeout bounds connecting to the target.
	DialTimeout = 5 * time.Second
	bufSize     = 32 << 10
)

// Proxy forwards TCP connections from a loopback port to a target address
// and can black-hole them on demand. It is safe for concurrent use.
type Proxy struct {
	target string
	ln     net.Listener
	ctx    context.Context // cancelled by Close; bounds dials
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	blocked bool
	closed  bool
	conns   map[*link]struct{}
}

// link is one client connection and, once forwarded, its upstream.
type link struct {
	client   net.Conn
	upstream net.Conn    // nil while held (accepted during a block)
	dead     atomic.Bool // black-holed: drop every byte until closed
	once     sync.Once
}

func (l *link) close() {
	l.once.Do(func() {
		_ = l.client.Close()
		if l.upstream != nil {
			_ = l.upstream.Close()
		}
	})
}

// New listens on 127.0.0.1 on a random port and forwards every accepted
// connection to target ("host:port").
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{target: target, ln: ln, ctx: ctx, cancel: cancel, conns: make(map[*link]struct{})}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's listen address, "127.0.0.1:port".
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// URL returns "http://" + Addr(), for use as an etcd endpoint.
func (p *Proxy) URL() string { return "http://" + p.Addr() }

// Block cuts the path: open connections stop passing bytes in both
// directions (they stay open; whatever arrives is discarded) and new
// connections are accepted but never forwarded.
func (p *Proxy) Block() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = true
	for l := range p.conns {
		l.dead.Store(true)
	}
}

// Unblock heals the path: connections cut by Block, and those accepted
// while blocked, are closed (their streams lost bytes), and new connections
// are forwarded again.
func (p *Proxy) Unblock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocked = false
	for l := range p.conns {
		if l.dead.Load() {
			l.close()
		}
	}
}

// Close stops listening, closes every connection and waits for all of the
// proxy's goroutines to end.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	err := p.ln.Close()
	for l := range p.conns {
		l.close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failure (e.g. out of descriptors): back off briefly.
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		l := &link{client: c}
		p.mu.Lock()
		if p.closed || len(p.conns) >= MaxConns {
			p.mu.Unlock()
			_ = c.Close()
			continue
		}
		p.conns[l] = struct{}{}
		if p.blocked {
			l.dead.Store(true)
		}
		p.wg.Add(1)
		p.mu.Unlock()
		go p.serve(l)
	}
}

func (p *Proxy) forget(l *link) {
	l.close()
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

// serve handles one accepted connection until either side closes.
func (p *Proxy) serve(l *link) {
	defer p.wg.Done()
	defer p.forget(l)
	if l.dead.Load() {
		// Accepted during a block: hold it, swallowing what the client
		// sends, until the client, Unblock or Close ends it.
		_, _ = io.Copy(io.Discard, l.client)
		return
	}
	d := net.Dialer{Timeout: DialTimeout}
	up, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	if p.closed || l.dead.Load() {
		// Closed, or blocked while dialling: never forward this one.
		p.mu.Unlock()
		_ = up.Close()
		if !p.closed {
			_, _ = io.Copy(io.Discard, l.client)
		}
		return
	}
	l.upstream = up
	p.mu.Unlock()

	done := make(chan struct{}, 2)
	go func() { p.pipe(l, up, l.client); done <- struct{}{} }()
	go func() { p.pipe(l, l.client, up); done <- struct{}{} }()
	<-done // either direction ended: tear down both
	l.close()
	<-done
}

// pipe copies src to dst until src fails, dropping everything once the
// link is black-holed.
func (p *Proxy) pipe(l *link, dst, src net.Conn) {
	buf := make([]byte, bufSize)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.dead.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			// No half-close: the clients this proxy serves (gRPC, HTTP)
			// do not need it, and a closed side ends the link.
			return
		}
	}
}
