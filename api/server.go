package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Timeouts of the API's HTTP server. Health checks are tiny and frequent; a
// client that trickles its request must not tie up the agent.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 10 * time.Second
	idleTimeout       = 60 * time.Second
	maxHeaderBytes    = 16 << 10
)

// Server is the agent's HTTP API server: a bound listener and the
// http.Server that answers on it. Create one with Listen or ListenTLS, run
// Serve in its own goroutine, and stop it with Shutdown.
type Server struct {
	ln    net.Listener
	srv   *http.Server
	mu    sync.Mutex
	state int // serveIdle, serveRunning or serveDone
}

const (
	serveIdle = iota
	serveRunning
	serveDone
)

// Listen binds addr ("host:port"; port 0 picks a free port) for plain HTTP
// and returns a Server that will answer with h. Binding happens now, so a
// busy port is reported here rather than by Serve.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", addr, err)
	}
	return newServer(ln, h), nil
}

// ListenTLS is Listen for HTTPS. cfg must provide a certificate
// (Certificates, GetCertificate or GetConfigForClient); it is cloned, so
// later changes to it have no effect. Set cfg.ClientAuth to require client
// certificates.
func ListenTLS(addr string, h http.Handler, cfg *tls.Config) (*Server, error) {
	if cfg == nil {
		return nil, errors.New("api: ListenTLS: nil tls.Config")
	}
	if len(cfg.Certificates) == 0 && cfg.GetCertificate == nil && cfg.GetConfigForClient == nil {
		return nil, errors.New("api: ListenTLS: tls.Config has no certificate (set Certificates or GetCertificate)")
	}
	c := cfg.Clone()
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", addr, err)
	}
	return newServer(tls.NewListener(ln, c), h), nil
}

// newServer wraps a bound listener.
func newServer(ln net.Listener, h http.Handler) *Server {
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn),
		},
	}
	if c, ok := h.(interface{ closeStreams() }); ok {
		// Held GET /alive requests end when the server shuts down.
		s.srv.RegisterOnShutdown(c.closeStreams)
	}
	return s
}

// Addr returns the address the server is bound to, with the real port when
// Listen was given port 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until Shutdown is called, then returns nil; after
// Shutdown it returns nil at once. It returns an error if the listener fails
// or if Serve is already running.
func (s *Server) Serve() error {
	s.mu.Lock()
	switch s.state {
	case serveRunning:
		s.mu.Unlock()
		return errors.New("api: Serve called twice")
	case serveDone:
		s.mu.Unlock()
		return nil
	}
	s.state = serveRunning
	s.mu.Unlock()

	err := s.srv.Serve(s.ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("api: serve on %s: %w", s.Addr(), err)
}

// Shutdown stops accepting connections, waits for requests in flight to be
// answered or for ctx to end, and closes the listener. It is safe to call
// before Serve and more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.state = serveDone
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	// Shutdown closes only listeners Serve has taken; close ours in case
	// Serve never ran.
	if cerr := s.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("api: shutdown: %w", err)
	}
	return nil
}
