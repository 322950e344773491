package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/operator"
)

// Operator carries out operator requests for the mutating endpoints.
// *operator.Operator implements it; NewOperator adapts an operator.Store so
// that each request names its HTTP requester.
type Operator interface {
	// Switchover asks the leader to hand over to to (the best replica when
	// empty), now or, if at is not zero, at at.
	Switchover(ctx context.Context, to string, at time.Time) (cluster.Request, error)
	// Cancel drops the pending request and returns it.
	Cancel(ctx context.Context) (cluster.Request, error)
	// Failover makes to the new primary when there is no healthy one;
	// confirmedDown, when set, is the old primary the operator confirms
	// can no longer take writes.
	Failover(ctx context.Context, to, confirmedDown string) error
	// Pause suspends automatic failover.
	Pause(ctx context.Context) error
	// Resume re-enables automatic failover.
	Resume(ctx context.Context) error
}

var _ Operator = (*operator.Operator)(nil)

// NewOperator returns an Operator that writes to store through a fresh
// operator.Operator per request, whose Who is Requester(ctx): the history
// and the pending request then name the client that asked.
func NewOperator(store operator.Store) Operator { return storeOperator{store} }

// storeOperator is the Operator NewOperator returns.
type storeOperator struct{ store operator.Store }

func (s storeOperator) op(ctx context.Context) *operator.Operator {
	return &operator.Operator{Store: s.store, Who: Requester(ctx)}
}

// Switchover calls operator.Operator.Switchover.
func (s storeOperator) Switchover(ctx context.Context, to string, at time.Time) (cluster.Request, error) {
	return s.op(ctx).Switchover(ctx, to, at)
}

// Cancel calls operator.Operator.Cancel.
func (s storeOperator) Cancel(ctx context.Context) (cluster.Request, error) {
	return s.op(ctx).Cancel(ctx)
}

// Failover calls operator.Operator.Failover.
func (s storeOperator) Failover(ctx context.Context, to, confirmedDown string) error {
	return s.op(ctx).Failover(ctx, to, confirmedDown)
}

// Pause calls operator.Operator.Pause.
func (s storeOperator) Pause(ctx context.Context) error { return s.op(ctx).Pause(ctx) }

// Resume calls operator.Operator.Resume.
func (s storeOperator) Resume(ctx context.Context) error { return s.op(ctx).Resume(ctx) }

// requesterKey is the context key of Requester's value.
type requesterKey struct{}

// Requester returns who sent the API request whose context ctx is, as
// "api from ADDR" (ADDR is the TCP peer, so a proxy's address when there is
// one), with the client certificate's subject when one was verified; "api"
// outside a request.
func Requester(ctx context.Context) string {
	if s, ok := ctx.Value(requesterKey{}).(string); ok {
		return s
	}
	return "api"
}

// requester describes r's sender for Requester.
func requester(r *http.Request) string {
	who := "api from " + r.RemoteAddr
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		who += " (client certificate " + r.TLS.VerifiedChains[0][0].Subject.String() + ")"
	}
	return who
}

// Limits of the mutating endpoints.
const (
	// maxBodyBytes bounds a request body.
	maxBodyBytes = 1 << 20
	// operatorTimeout bounds the store round trips of one request; it is
	// below the server's write timeout so that the client gets an answer.
	operatorTimeout = 8 * time.Second
)

// operatorMethods is the Allow header of each mutating endpoint.
var operatorMethods = map[endpoint]string{
	epSwitchover: "POST, DELETE, OPTIONS",
	epFailover:   "POST, OPTIONS",
	epPause:      "POST, OPTIONS",
	epResume:     "POST, OPTIONS",
	epFailsafe:   "POST, OPTIONS",
}

// disabledMsg answers every mutating request when no token is configured.
const disabledMsg = "operator endpoints are disabled: set api.token_file"

// serveOperator answers a mutating endpoint: method, then authorization,
// then body, then the operator call.
func (h *handler) serveOperator(w http.ResponseWriter, r *http.Request, ep endpoint, path string) {
	allow := operatorMethods[ep]
	switch {
	case r.Method == http.MethodOptions:
		w.Header().Set("Allow", allow)
		w.WriteHeader(http.StatusNoContent)
		return
	case r.Method == http.MethodPost, r.Method == http.MethodDelete && ep == epSwitchover:
	default:
		w.Header().Set("Allow", allow)
		writeError(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; it answers %s", r.Method, path, allow))
		return
	}
	if !h.authorize(w, r, path) {
		return
	}
	if ep == epFailsafe {
		h.serveFailsafe(w, r)
		return
	}
	if h.op == nil {
		writeError(w, r, http.StatusServiceUnavailable, "operator endpoints are not available on this agent (no operator configured)")
		return
	}
	who := requester(r)
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), requesterKey{}, who), operatorTimeout)
	defer cancel()
	switch {
	case ep == epSwitchover && r.Method == http.MethodDelete:
		h.serveCancel(ctx, w, r)
	case ep == epSwitchover:
		h.serveSwitchover(ctx, w, r)
	case ep == epFailover:
		h.serveFailover(ctx, w, r)
	default:
		h.servePause(ctx, w, r, ep == epPause)
	}
}

// authorize checks r's bearer token against the configured one and answers
// 401 or 403 when it is missing or wrong. The token is never logged.
func (h *handler) authorize(w http.ResponseWriter, r *http.Request, path string) bool {
	if !h.hasToken {
		writeError(w, r, http.StatusForbidden, disabledMsg)
		return false
	}
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	tok = strings.TrimSpace(tok)
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hamgr"`)
		writeError(w, r, http.StatusUnauthorized, "missing bearer token: send the header \"Authorization: Bearer TOKEN\" with the token of api.token_file")
		return false
	}
	// Comparing digests keeps the comparison constant-time in the token's
	// length as well as its content.
	sum := sha256.Sum256([]byte(tok))
	if subtle.ConstantTimeCompare(sum[:], h.tokenSum[:]) != 1 {
		h.log.Warn("api: rejected operator request with a wrong bearer token",
			"method", r.Method, "path", path, "remote", r.RemoteAddr)
		writeError(w, r, http.StatusForbidden, "wrong bearer token")
		return false
	}
	return true
}

// switchoverBody is the body of POST /switchover: hamgr's field to or
// Patroni's candidate, Patroni's leader and scheduled_at.
type switchoverBody struct {
	To          string `json:"to"`
	Candidate   string `json:"candidate"`
	Leader      string `json:"leader"`
	ScheduledAt string `json:"scheduled_at"`
}

// failoverBody is the body of POST /failover.
type failoverBody struct {
	To        string `json:"to"`
	Candidate string `json:"candidate"`
	Leader    string `json:"leader"`
	// ConfirmDown is the old primary the operator confirms cannot take
	// writes any more (cluster.Request.ConfirmedDown).
	ConfirmDown string `json:"confirm_down"`
}

// emptyBody is the body of the endpoints that take no parameters: nothing,
// or a JSON object without fields.
type emptyBody struct{}

// requestView is the JSON answer describing an accepted or cancelled
// request.
type requestView struct {
	Kind        cluster.RequestKind `json:"kind"`
	From        string              `json:"from,omitempty"`
	To          string              `json:"to,omitempty"`
	ScheduledAt *time.Time          `json:"scheduled_at,omitempty"`
	RequestedAt *time.Time          `json:"requested_at,omitempty"`
	RequestedBy string              `json:"requested_by,omitempty"`
	Message     string              `json:"message"`
}

// newRequestView describes r.
func newRequestView(r cluster.Request, msg string) requestView {
	return requestView{
		Kind: r.Kind, From: r.From, To: r.To, ScheduledAt: timeOf(r.At),
		RequestedAt: timeOf(r.RequestedAt), RequestedBy: r.RequestedBy, Message: msg,
	}
}

func (h *handler) serveSwitchover(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	var b switchoverBody
	if !h.decodeBody(w, r, &b, "to, candidate, leader, scheduled_at") {
		return
	}
	to, ok := target(w, r, b.To, b.Candidate)
	if !ok {
		return
	}
	var at time.Time
	if b.ScheduledAt != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, b.ScheduledAt); err != nil {
			writeError(w, r, http.StatusBadRequest, fmt.Sprintf("field scheduled_at: %q is not an RFC 3339 time with a time zone, like 2026-03-04T05:06:07Z", b.ScheduledAt))
			return
		}
	}
	if b.Leader != "" && !h.checkLeader(w, r, b.Leader, true) {
		return
	}
	req, err := h.op.Switchover(ctx, to, at)
	if err != nil {
		h.operatorError(w, r, "switchover", err)
		return
	}
	msg := fmt.Sprintf("switchover from %s to %s requested; the leader hands over at its next loop round", req.From, req.To)
	if !req.At.IsZero() {
		msg = fmt.Sprintf("switchover from %s to %s scheduled for %s", req.From, req.To, req.At.UTC().Format(time.RFC3339))
	}
	h.log.Info("api: switchover requested", "from", req.From, "to", req.To, "at", req.At, "by", req.RequestedBy)
	writeJSON(w, r, http.StatusAccepted, newRequestView(req, msg))
}

func (h *handler) serveCancel(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	if !h.decodeBody(w, r, &emptyBody{}, "none") {
		return
	}
	req, err := h.op.Cancel(ctx)
	if err != nil {
		h.operatorError(w, r, "cancel", err)
		return
	}
	h.log.Info("api: request cancelled", "kind", req.Kind, "to", req.To, "by", Requester(ctx))
	writeJSON(w, r, http.StatusOK, newRequestView(req, fmt.Sprintf("pending %s cancelled", req.Kind)))
}

func (h *handler) serveFailover(ctx context.Context, w http.ResponseWriter, r *http.Request) {
	var b failoverBody
	if !h.decodeBody(w, r, &b, "to, candidate, leader, confirm_down") {
		return
	}
	to, ok := target(w, r, b.To, b.Candidate)
	if !ok {
		return
	}
	if to == "" {
		writeError(w, r, http.StatusBadRequest, "field to (or Patroni's candidate) is required: the member to promote")
		return
	}
	if b.Leader != "" && !h.checkLeader(w, r, b.Leader, false) {
		return
	}
	if err := h.op.Failover(ctx, to, b.ConfirmDown); err != nil {
		h.operatorError(w, r, "failover", err)
		return
	}
	who := Requester(ctx)
	h.log.Info("api: manual failover requested", "to", to, "by", who, "confirm_down", b.ConfirmDown)
	writeJSON(w, r, http.StatusAccepted, requestView{
		Kind: cluster.KindFailover, To: to, RequestedBy: who,
		Message: fmt.Sprintf("failover to %s requested; %s promotes at its next loop round", to, to),
	})
}

func (h *handler) servePause(ctx context.Context, w http.ResponseWriter, r *http.Request, pause bool) {
	if !h.decodeBody(w, r, &emptyBody{}, "none") {
		return
	}
	what, call := "resume", h.op.Resume
	if pause {
		what, call = "pause", h.op.Pause
	}
	if err := call(ctx); err != nil {
		h.operatorError(w, r, what, err)
		return
	}
	msg := "automatic failover resumed; agents apply it at their next loop round"
	if pause {
		msg = "automatic failover paused; agents apply it at their next loop round"
	}
	h.log.Info("api: "+what+" requested", "by", Requester(ctx))
	writeJSON(w, r, http.StatusAccepted, map[string]any{"paused": pause, "message": msg})
}

// target reconciles hamgr's to with Patroni's candidate; it answers 400
// when both are given and differ.
func target(w http.ResponseWriter, r *http.Request, to, candidate string) (string, bool) {
	if to != "" && candidate != "" && to != candidate {
		writeError(w, r, http.StatusBadRequest, fmt.Sprintf("fields to (%q) and candidate (%q) name different members; give one of them", to, candidate))
		return "", false
	}
	if to == "" {
		to = candidate
	}
	return to, true
}

// checkLeader answers 409 unless name holds the leader key in the agent's
// latest view, as Patroni refuses a request naming the wrong leader. With
// mustExist false, a cluster without a leader passes (a failover's old
// leader is typically gone).
func (h *handler) checkLeader(w http.ResponseWriter, r *http.Request, name string, mustExist bool) bool {
	st := h.src.State()
	switch {
	case st.Leader == nil && mustExist:
		writeError(w, r, http.StatusConflict, fmt.Sprintf("refused: the request names leader %s, but no one holds the leader key", name))
		return false
	case st.Leader != nil && st.Leader.Name != name:
		writeError(w, r, http.StatusConflict, fmt.Sprintf("refused: the request names leader %s, but the leader is %s (epoch %d)", name, st.Leader.Name, st.Leader.Epoch))
		return false
	}
	return true
}

// operatorError answers 409 for a refusal and 503 for anything else (the
// store did not answer or failed).
func (h *handler) operatorError(w http.ResponseWriter, r *http.Request, what string, err error) {
	if errors.Is(err, operator.ErrRefused) {
		msg := inAPIWords(err.Error())
		h.log.Info("api: "+what+" refused", "reason", msg, "remote", r.RemoteAddr)
		writeError(w, r, http.StatusConflict, msg)
		return
	}
	h.log.Warn("api: "+what+" failed", "err", err, "remote", r.RemoteAddr)
	writeError(w, r, http.StatusServiceUnavailable, fmt.Sprintf("%s failed, nothing is known to have changed; retry when the store is reachable: %v", what, err))
}

// apiWords rewrite the hamgrctl commands and flags that package operator's
// refusals name (they are shared with hamgrctl, which words them for its
// users) as the API's requests and JSON fields, in this order. The test
// TestRefusalsNameAPIFields drives every refusal through the real operator
// and fails if a flag remains.
var apiWords = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\bfailover --to MEMBER\b`), `POST /failover with {"to": MEMBER}`},
	{regexp.MustCompile(`\bswitchover --to (\S+)`), `POST /switchover with {"to": "$1"}`},
	{regexp.MustCompile(`\bswitchover --cancel\b`), `DELETE /switchover`},
	{regexp.MustCompile(`--at\b`), `scheduled_at`},
	{regexp.MustCompile(`--to MEMBER\b`), `field to`},
	{regexp.MustCompile(`--to\b`), `to`},
	{regexp.MustCompile(`\brun list to see it\b`), `hamgrctl list shows it`},
}

// inAPIWords returns msg with apiWords applied.
func inAPIWords(msg string) string {
	for _, w := range apiWords {
		msg = w.re.ReplaceAllString(msg, w.repl)
	}
	return msg
}

// decodeBody reads r's body, at most maxBodyBytes, into dst, a pointer to a
// struct. An empty body leaves dst as it is. It answers 400 for anything
// but one JSON object with known fields (listed in known for the error),
// and 413 for a body that is too large.
func (h *handler) decodeBody(w http.ResponseWriter, r *http.Request, dst any, known string) bool {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", maxBodyBytes))
			return false
		}
		writeError(w, r, http.StatusBadRequest, "read request body: "+err.Error())
		return false
	}
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return true
	}
	if kind := nonObject(trimmed); kind != "" {
		// Decoding null into a struct succeeds and leaves it empty: a
		// body of null would otherwise start a switchover to anyone.
		writeError(w, r, http.StatusBadRequest, fmt.Sprintf("the body must be a JSON object ({...}; known fields: %s), not %s", known, kind))
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err == nil {
		return true
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	msg := ""
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		msg = fmt.Sprintf("field %s: want a JSON %s, got %s", typeErr.Field, typeErr.Type.Kind(), typeErr.Value)
	case errors.As(err, &syntaxErr):
		msg = fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		msg = "malformed JSON: the body ends early"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		msg = fmt.Sprintf("unknown field %s; known fields: %s", strings.TrimPrefix(err.Error(), "json: unknown field "), known)
	default:
		msg = "malformed body: " + err.Error()
	}
	writeError(w, r, http.StatusBadRequest, msg)
	return false
}

// nonObject names the kind of JSON value that data (trimmed, not empty)
// starts with when it is not an object: "null", "an array", "a string",
// "a number" or "a boolean"; "" for an object or something that is not
// JSON at all (the decoder then explains the syntax error).
func nonObject(data []byte) string {
	switch c := data[0]; {
	case c == '{':
		return ""
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	case bytes.Equal(data, []byte("null")):
		return "null"
	case bytes.Equal(data, []byte("true")), bytes.Equal(data, []byte("false")):
		return "a boolean"
	}
	return ""
}
