package writeclient

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestMySQLIdent(t *testing.T) {
	o := Options{Engine: MySQL, Table: "t`x"}.withDefaults()
	if got, want := o.mysqlIdent(), "`"+DefaultMySQLDatabase+"`.`t``x`"; got != want {
		t.Errorf("mysqlIdent = %s, want %s", got, want)
	}
	if got := (Options{Engine: MySQL, Table: "s.t"}).withDefaults().mysqlSchema(); got != "`s`" {
		t.Errorf("mysqlSchema of s.t = %s", got)
	}
}

// With no writable server, the connection error names what each host
// answered, in order.
func TestMySQLConnectNamesEveryHost(t *testing.T) {
	var hosts []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, ln.Addr().String())
		ln.Close() // refused from now on
	}
	o := Options{Engine: MySQL, Hosts: append(hosts, "127.0.0.1:notaport"), User: "u"}.withDefaults()
	o.ConnectTimeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := o.connect(ctx)
	if err == nil {
		t.Fatal("connected with no server")
	}
	for _, h := range append(hosts, `bad host "127.0.0.1:notaport"`) {
		if !strings.Contains(err.Error(), h) {
			t.Errorf("error %q does not name %s", err, h)
		}
	}
}
