package consul

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeConsul follows Consul's documented HTTP API as far as the publisher
// uses it (agent service register/read/deregister, KV get and
// check-and-set), for the tests that run without a real Consul agent.
// Services are kept as registered; KV indexes count writes.
type fakeConsul struct {
	mu       sync.Mutex
	services map[string]map[string]any // ID → the registration as sent
	kv       map[string][]byte
	index    map[string]uint64
	next     uint64
	token    string // required X-Consul-Token ("": none)
	fail     bool   // answer 500 to everything
}

func newFakeConsul(t *testing.T) (*fakeConsul, *httptest.Server) {
	f := &fakeConsul{services: map[string]map[string]any{}, kv: map[string][]byte{}, index: map[string]uint64{}}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return f, s
}

func (f *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	}
	if f.token != "" && r.Header.Get("X-Consul-Token") != f.token {
		http.Error(w, "ACL not found", http.StatusForbidden)
		return
	}
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPut && p == "/v1/agent/service/register":
		var reg map[string]any
		if err := json.NewDecoder(r.Body).Decode(&reg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id, _ := reg["ID"].(string)
		f.services[id] = reg
	case r.Method == http.MethodPut && strings.HasPrefix(p, "/v1/agent/service/deregister/"):
		delete(f.services, strings.TrimPrefix(p, "/v1/agent/service/deregister/"))
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/v1/agent/service/"):
		reg, ok := f.services[strings.TrimPrefix(p, "/v1/agent/service/")]
		if !ok {
			http.Error(w, "unknown service ID", http.StatusNotFound)
			return
		}
		out := map[string]any{"ID": reg["ID"], "Service": reg["Name"], "Tags": reg["Tags"], "Meta": reg["Meta"],
			"Port": reg["Port"], "Address": reg["Address"]}
		_ = json.NewEncoder(w).Encode(out)
	case strings.HasPrefix(p, "/v1/kv/"):
		f.serveKV(w, r, strings.TrimPrefix(p, "/v1/kv/"))
	default:
		http.Error(w, "not in the fake: "+r.Method+" "+p, http.StatusNotFound)
	}
}

func (f *fakeConsul) serveKV(w http.ResponseWriter, r *http.Request, key string) {
	switch r.Method {
	case http.MethodGet:
		v, ok := f.kv[key]
		if !ok {
			http.Error(w, "", http.StatusNotFound)
			return
		}
		_ = json.NewEncoder(w).Encode([]map[string]any{{"Key": key, "Value": v, "ModifyIndex": f.index[key], "CreateIndex": f.index[key]}})
	case http.MethodPut:
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if c := r.URL.Query().Get("cas"); c != "" {
			want, _ := strconv.ParseUint(c, 10, 64)
			if f.index[key] != want {
				_, _ = w.Write([]byte("false"))
				return
			}
		}
		f.next++
		f.kv[key], f.index[key] = body, f.next
		_, _ = w.Write([]byte("true"))
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
	}
}

// service returns the registration of id (nil: none).
func (f *fakeConsul) service(id string) map[string]any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.services[id]
}
