package dns

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	mdns "github.com/miekg/dns"
)

// Algorithm is a TSIG HMAC algorithm, named as BIND names it.
type Algorithm string

// The TSIG algorithms a Key may use.
const (
	HMACSHA1   Algorithm = "hmac-sha1"
	HMACSHA224 Algorithm = "hmac-sha224"
	HMACSHA256 Algorithm = "hmac-sha256"
	HMACSHA384 Algorithm = "hmac-sha384"
	HMACSHA512 Algorithm = "hmac-sha512"
)

// DefaultAlgorithm is the algorithm of a Key that names none.
const DefaultAlgorithm = HMACSHA256

// Algorithms lists the accepted algorithms, strongest last.
var Algorithms = []Algorithm{HMACSHA1, HMACSHA224, HMACSHA256, HMACSHA384, HMACSHA512}

// ParseAlgorithm returns the algorithm named s ("" is DefaultAlgorithm), or
// an error listing the accepted names.
func ParseAlgorithm(s string) (Algorithm, error) {
	if s == "" {
		return DefaultAlgorithm, nil
	}
	a := Algorithm(strings.TrimSuffix(strings.ToLower(s), "."))
	for _, ok := range Algorithms {
		if a == ok {
			return a, nil
		}
	}
	names := make([]string, len(Algorithms))
	for i, ok := range Algorithms {
		names[i] = string(ok)
	}
	return "", fmt.Errorf("%q is not a TSIG algorithm: want one of %s", s, strings.Join(names, ", "))
}

// fqdn is the algorithm's name in a TSIG record.
func (a Algorithm) fqdn() string { return string(a) + "." }

// Key is a TSIG key: its name, its algorithm and its secret (base64, as in
// a BIND key file). Its String, GoString and LogValue forms hold the name
// and algorithm only: the secret never reaches a log line or an error.
type Key struct {
	name      string
	algorithm Algorithm
	secret    string
}

// NewKey checks and returns a TSIG key. The name is the key's name as the
// server knows it (key "NAME" in named.conf); secret is the base64 secret.
// Errors name the key, never the secret.
func NewKey(name string, alg Algorithm, secret string) (Key, error) {
	name = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
	if name == "" {
		return Key{}, fmt.Errorf("TSIG key: the key name is empty")
	}
	if _, ok := mdns.IsDomainName(name); !ok {
		return Key{}, fmt.Errorf("TSIG key %q: not a valid key name", name)
	}
	if alg == "" {
		alg = DefaultAlgorithm
	}
	if _, err := ParseAlgorithm(string(alg)); err != nil {
		return Key{}, fmt.Errorf("TSIG key %q: %w", name, err)
	}
	secret = strings.TrimSpace(secret)
	if secret == "" {
		return Key{}, fmt.Errorf("TSIG key %q: the secret is empty", name)
	}
	if _, err := base64.StdEncoding.DecodeString(secret); err != nil {
		return Key{}, fmt.Errorf("TSIG key %q: the secret is not base64 (as tsig-keygen writes it)", name)
	}
	return Key{name: name, algorithm: alg, secret: secret}, nil
}

// Name is the key's name, without the trailing dot.
func (k Key) Name() string { return k.name }

// Algorithm is the key's algorithm.
func (k Key) Algorithm() Algorithm { return k.algorithm }

// String names the key and its algorithm, never the secret.
func (k Key) String() string { return fmt.Sprintf("TSIG key %q (%s)", k.name, k.algorithm) }

// GoString is String, so that %#v does not print the secret either.
func (k Key) GoString() string { return k.String() }

// fqdn is the key's name in a TSIG record and in the client's secret map.
func (k Key) fqdn() string { return k.name + "." }

// keyFileRE matches the secret of a BIND key statement, as tsig-keygen
// writes it: key "NAME" { algorithm ALG; secret "BASE64"; };
var (
	keyFileSecretRE = regexp.MustCompile(`secret\s+"([^"]+)"`)
	keyFileNameRE   = regexp.MustCompile(`key\s+"?([^"\s{]+)"?\s*\{`)
	keyFileAlgRE    = regexp.MustCompile(`algorithm\s+"?([A-Za-z0-9.-]+)"?\s*;`)
)

// ParseKeyFile reads a key file's contents: either a BIND key statement as
// tsig-keygen writes it (key "NAME" { algorithm ALG; secret "..."; };), or
// the bare base64 secret alone. name and alg are the configured key name
// and algorithm; a BIND statement that names another key, or another
// algorithm, is refused, since the server would reject every update.
// Errors name the key, never the secret.
func ParseKeyFile(data []byte, name string, alg Algorithm) (Key, error) {
	text := string(data)
	if !strings.Contains(text, "secret") {
		return NewKey(name, alg, text)
	}
	m := keyFileSecretRE.FindStringSubmatch(text)
	if m == nil {
		return Key{}, fmt.Errorf("TSIG key %q: the key file has no secret \"...\"; clause", name)
	}
	want := strings.TrimSuffix(strings.ToLower(name), ".")
	if n := keyFileNameRE.FindStringSubmatch(text); n != nil && strings.TrimSuffix(strings.ToLower(n[1]), ".") != want {
		return Key{}, fmt.Errorf("TSIG key %q: the key file defines key %q: set the key name to %q or use that key's file", name, n[1], n[1])
	}
	if a := keyFileAlgRE.FindStringSubmatch(text); a != nil {
		fileAlg, err := ParseAlgorithm(a[1])
		if err != nil {
			return Key{}, fmt.Errorf("TSIG key %q: the key file's algorithm: %w", name, err)
		}
		if alg == "" {
			alg = fileAlg
		}
		if fileAlg != alg {
			return Key{}, fmt.Errorf("TSIG key %q: the key file's algorithm is %s, not the configured %s", name, fileAlg, alg)
		}
	}
	return NewKey(name, alg, m[1])
}
