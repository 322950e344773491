// Package redfishtest is a small Redfish service (DMTF DSP0266) for the
// fencing drivers' tests: one ComputerSystem whose power can be read
// (PowerState) and reset (Actions "#ComputerSystem.Reset", ResetType On,
// ForceOff, GracefulShutdown, ForceRestart), served over HTTPS on a
// loopback port with a self-signed certificate.
//
// The service root /redfish/v1 is readable without credentials, as on real
// BMCs; everything else needs HTTP basic authentication or a session token
// (X-Auth-Token) created by POST to the Sessions collection, which is what
// bmclib's gofish provider uses. A power off can run a hook (the tests kill
// a stand-in "host" process with it).
package redfishtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Paths of the service's resources.
const (
	RootPath     = "/redfish/v1"
	SystemsPath  = RootPath + "/Systems"
	SystemPath   = SystemsPath + "/1"
	ResetPath    = SystemPath + "/Actions/ComputerSystem.Reset"
	SessionsPath = RootPath + "/SessionService/Sessions"
)

// Options configure a Server.
type Options struct {
	// Username and Password are the only valid credentials.
	Username, Password string
	// PowerOffDelay is how long a power off stays "PoweringOff" before
	// PowerState reads "Off" (0: at once).
	PowerOffDelay time.Duration
	// OnPowerOff, if set, runs when a ForceOff or GracefulShutdown is
	// accepted, before the request is answered.
	OnPowerOff func()
	// Listen is the address to serve on (host:port, port 0 for any);
	// empty: a loopback port. The container drills serve on their
	// network's gateway, for the agents in the containers.
	Listen string
}

// Server is a running Redfish service.
type Server struct {
	srv  *httptest.Server
	opts Options

	mu       sync.Mutex
	power    string // "On", "Off"
	offAt    time.Time
	sessions map[string]string // token -> session path
	nextID   int
	resets   []string
}

// Start starts a Server with power on. Close stops it.
func Start(opts Options) *Server {
	s := &Server{opts: opts, power: "On", sessions: map[string]string{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	// Handshakes a test refuses on purpose are not news.
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned()}}
	if opts.Listen != "" {
		l, err := net.Listen("tcp", opts.Listen)
		if err != nil {
			panic(fmt.Sprintf("redfishtest: listen on %s: %v", opts.Listen, err))
		}
		s.srv.Listener.Close()
		s.srv.Listener = l
	}
	s.srv.StartTLS()
	return s
}

// selfSigned makes a fresh self-signed certificate for 127.0.0.1, so that
// every Server has its own (httptest's built-in one is shared by all).
func selfSigned() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "hamgr redfishtest BMC"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// CertPEM is the server's certificate in PEM, as a ca_file would hold it.
func (s *Server) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Host is the server's address (127.0.0.1).
func (s *Server) Host() string { return s.url().Hostname() }

// Port is the server's TCP port.
func (s *Server) Port() string { return s.url().Port() }

func (s *Server) url() *url.URL {
	u, err := url.Parse(s.srv.URL)
	if err != nil {
		panic(err)
	}
	return u
}

// CertPool holds the server's self-signed certificate.
func (s *Server) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(s.srv.Certificate())
	return p
}

// PowerState is the system's power state as a client would read it.
func (s *Server) PowerState() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stateLocked()
}

// Resets lists the ResetTypes accepted so far, in order.
func (s *Server) Resets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.resets...)
}

// SetPower sets the power state ("On" or "Off") without a reset.
func (s *Server) SetPower(state string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.power, s.offAt = state, time.Time{}
}

func (s *Server) stateLocked() string {
	if s.power == "Off" && time.Now().Before(s.offAt) {
		return "PoweringOff"
	}
	return s.power
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimRight(r.URL.Path, "/")
	if path == RootPath && r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, s.root())
		return
	}
	if path == SessionsPath && r.Method == http.MethodPost {
		s.createSession(w, r)
		return
	}
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="redfish"`)
		writeError(w, http.StatusUnauthorized, "Base.1.8.NoValidSession", "authentication required")
		return
	}
	switch {
	case r.Method == http.MethodGet && path == SystemsPath:
		writeJSON(w, http.StatusOK, map[string]any{
			"@odata.id": SystemsPath, "@odata.type": "#ComputerSystemCollection.ComputerSystemCollection",
			"Name": "Computer System Collection", "Members@odata.count": 1,
			"Members": []any{map[string]any{"@odata.id": SystemPath}},
		})
	case r.Method == http.MethodGet && path == SystemPath:
		writeJSON(w, http.StatusOK, s.system())
	case r.Method == http.MethodPost && path == ResetPath:
		s.reset(w, r)
	case r.Method == http.MethodGet && path == SessionsPath:
		s.listSessions(w)
	case strings.HasPrefix(path, SessionsPath+"/"):
		s.session(w, r, path)
	default:
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "no resource at "+path)
	}
}

func (s *Server) root() map[string]any {
	return map[string]any{
		"@odata.id": RootPath, "@odata.type": "#ServiceRoot.v1_5_0.ServiceRoot",
		"Id": "RootService", "Name": "hamgr test Redfish service", "RedfishVersion": "1.6.0",
		"UUID":           "92384634-2938-2342-8820-489239905423",
		"Systems":        map[string]any{"@odata.id": SystemsPath},
		"SessionService": map[string]any{"@odata.id": RootPath + "/SessionService"},
		"Links":          map[string]any{"Sessions": map[string]any{"@odata.id": SessionsPath}},
	}
}

func (s *Server) system() map[string]any {
	return map[string]any{
		"@odata.id": SystemPath, "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
		"Id": "1", "Name": "node", "SystemType": "Physical", "PowerState": s.PowerState(),
		"Actions": map[string]any{
			"#ComputerSystem.Reset": map[string]any{
				"target":                            ResetPath,
				"ResetType@Redfish.AllowableValues": []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart"},
			},
		},
	}
}

func (s *Server) reset(w http.ResponseWriter, r *http.Request) {
	var body struct{ ResetType string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "the request body is not JSON")
		return
	}
	s.mu.Lock()
	var hook func()
	switch body.ResetType {
	case "On", "ForceRestart":
		s.power, s.offAt = "On", time.Time{}
	case "ForceOff", "GracefulShutdown":
		if s.power != "Off" {
			s.power, s.offAt = "Off", time.Now().Add(s.opts.PowerOffDelay)
		}
		hook = s.opts.OnPowerOff
	default:
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Base.1.8.ActionParameterValueNotInList", fmt.Sprintf("ResetType %q is not allowed", body.ResetType))
		return
	}
	s.resets = append(s.resets, body.ResetType)
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) authorized(r *http.Request) bool {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, ok := s.sessions[tok]
		return ok
	}
	u, p, ok := r.BasicAuth()
	return ok && s.credentialsOK(u, p)
}

func (s *Server) credentialsOK(user, pass string) bool {
	return subtle.ConstantTimeCompare([]byte(user), []byte(s.opts.Username)) == 1 &&
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.opts.Password)) == 1
}

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var body struct{ UserName, Password string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "Base.1.8.MalformedJSON", "the request body is not JSON")
		return
	}
	if !s.credentialsOK(body.UserName, body.Password) {
		writeError(w, http.StatusUnauthorized, "Base.1.8.NoValidSession", "invalid user name or password")
		return
	}
	s.mu.Lock()
	s.nextID++
	id := fmt.Sprint(s.nextID)
	tok := fmt.Sprintf("token-%d-%d", s.nextID, time.Now().UnixNano())
	loc := SessionsPath + "/" + id
	s.sessions[tok] = loc
	s.mu.Unlock()
	w.Header().Set("X-Auth-Token", tok)
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusCreated, map[string]any{
		"@odata.id": loc, "@odata.type": "#Session.v1_0_0.Session", "Id": id, "Name": "User Session", "UserName": body.UserName,
	})
}

func (s *Server) listSessions(w http.ResponseWriter) {
	s.mu.Lock()
	members := []any{}
	for _, loc := range s.sessions {
		members = append(members, map[string]any{"@odata.id": loc})
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id": SessionsPath, "Name": "Session Collection", "Members": members, "Members@odata.count": len(members),
	})
}

func (s *Server) session(w http.ResponseWriter, r *http.Request, path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := ""
	for t, loc := range s.sessions {
		if loc == path {
			tok = t
		}
	}
	switch {
	case tok == "":
		writeError(w, http.StatusNotFound, "Base.1.8.ResourceMissingAtURI", "no session at "+path)
	case r.Method == http.MethodDelete:
		delete(s.sessions, tok)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodGet:
		id := path[strings.LastIndex(path, "/")+1:]
		writeJSON(w, http.StatusOK, map[string]any{"@odata.id": path, "Id": id, "Name": "User Session"})
	default:
		writeError(w, http.StatusMethodNotAllowed, "Base.1.8.OperationNotAllowed", r.Method+" is not allowed on a session")
	}
}

// SessionCount is the number of open sessions.
func (s *Server) SessionCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with a Redfish error object.
func writeError(w http.ResponseWriter, code int, msgID, msg string) {
	writeJSON(w, code, map[string]any{"error": map[string]any{
		"code": msgID, "message": msg,
		"@Message.ExtendedInfo": []any{map[string]any{"MessageId": msgID, "Message": msg}},
	}})
}
