package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// ClientConfig builds the client side of t: CAFile verifies the server,
// CertFile/KeyFile authenticate this side. It returns nil when t is not
// enabled (plaintext).
func (t TLS) ClientConfig() (*tls.Config, error) {
	if !t.Enabled() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load cert_file and key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// ServerConfig builds the server side of t: CertFile/KeyFile are required;
// CAFile, when set, verifies client certificates that are presented.
func (t TLS) ServerConfig() (*tls.Config, error) {
	if t.CertFile == "" {
		return nil, errors.New("cert_file and key_file are required to serve TLS")
	}
	tc, err := t.ClientConfig()
	if err != nil {
		return nil, err
	}
	if tc.RootCAs != nil {
		tc.ClientCAs, tc.RootCAs = tc.RootCAs, nil
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return tc, nil
}
