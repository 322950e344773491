package postgres

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
)

// conninfo builds a libpq keyword=value string from pairs, quoting values
// that need it.
func conninfo(pairs ...string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(pairs[i])
		b.WriteByte('=')
		b.WriteString(conninfoValue(pairs[i+1]))
	}
	return b.String()
}

func conninfoValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " \t\r\n'\\=") {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(v) + "'"
}

// configValue quotes a string for postgresql.conf / postgresql.auto.conf.
func configValue(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `''`, "\n", `\n`, "\r", `\r`)
	return "'" + r.Replace(v) + "'"
}

// sqlLiteral quotes a string as an SQL escape-string literal, which reads
// the same whatever standard_conforming_strings says.
func sqlLiteral(v string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `''`)
	return "E'" + r.Replace(v) + "'"
}

// pgpassLine is one ~/.pgpass-format line matching any host, port and
// database for user.
func pgpassLine(user, password string) string {
	r := strings.NewReplacer(`\`, `\\`, `:`, `\:`)
	return "*:*:*:" + r.Replace(user) + ":" + r.Replace(password) + "\n"
}

// scramVerifier returns the SCRAM-SHA-256 verifier PostgreSQL stores for
// password, so that CREATE ROLE never carries the password in clear. It
// reports false for non-ASCII passwords, which PostgreSQL would first
// normalize with SASLprep.
func scramVerifier(password string) (string, bool) {
	for i := 0; i < len(password); i++ {
		if password[i] < 0x20 || password[i] > 0x7e {
			return "", false
		}
	}
	const iterations = 4096
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", false
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", false
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc(salt), enc(storedKey[:]), enc(serverKey)), true
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
