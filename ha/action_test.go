package ha

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// is reports whether a is an action of type T.
func is[T Action](a Action) bool {
	_, ok := a.(T)
	return ok
}

// actionName is the first word of a's rendering: its kind.
func actionName(a Action) string {
	name, _, _ := strings.Cut(a.String(), " ")
	return name
}

// syncAny reports whether a sets any one standby synchronous.
func syncAny(a Action) bool {
	s, ok := a.(SetSyncStandbys)
	return ok && s.Choice == SyncAny
}

// allActions lists one action of every type, with how it renders. A new
// action type must be added here (TestEveryActionHasOneExecutor counts
// the Executor's methods against it).
func allActions() []struct {
	act  Action
	want string
} {
	up := db.Upstream{Name: "n2", Host: "h2", Port: 5432}
	ev := &cluster.Evidence{Kind: cluster.EvidenceRefused}
	prom := cluster.Promotion{Kind: cluster.HistoryFailover, Lost: 3, OldPrimary: "n1"}
	return []struct {
		act  Action
		want string
	}{
		{Initialize{}, "initialize"},
		{Clone{Upstream: up}, "clone upstream=n2"},
		{StartPrimary{}, "start-primary"},
		{StartReplica{Upstream: &up}, "start-replica upstream=n2"},
		{Stop{Mode: db.StopFast}, "stop mode=fast"},
		{Demote{}, "demote"},
		{Promote{}, "promote"},
		{Follow{Upstream: up}, "follow upstream=n2"},
		{AcquireLeader{Evidence: ev, Promotion: &prom}, `acquire-leader evidence=refused promotion="` + prom.String() + `"`},
		{ReleaseLeader{Leader: cluster.Leader{Name: "n1", Epoch: 4}}, "release-leader epoch=4"},
		{RecordFailover{Epoch: 3, History: cluster.HistorySwitchover, Evidence: ev}, `record-failover epoch=3 kind="switchover" evidence=refused`},
		{MarkCannotFollow{Epoch: 5}, "mark-cannot-follow epoch=5"},
		{Handoff{Target: "n3"}, "handoff target=n3"},
		{ClearRequest{}, "clear-request"},
		{SetSyncStandbys{Names: []string{"n2", "n3"}}, "set-sync-standbys names=[n2,n3]"},
		{SetSyncRecord{Names: []string{"n2"}}, "set-sync-record names=[n2]"},
		{SetAcknowledging{State: cluster.AckOn}, "set-acknowledging on"},
		{Detach{}, "detach"},
		{SetFailsafeRecord{Members: []cluster.FailsafeMember{{Name: "n1"}, {Name: "n2"}}}, "set-failsafe-record names=[n1,n2]"},
		{CreateSlots{Names: []string{"n2", "n3"}}, "create-slots names=[n2,n3]"},
		{DropSlots{Names: []string{"n4"}}, "drop-slots names=[n4]"},
		{Rewind{Upstream: up}, "rewind upstream=n2"},
		{Reclone{Upstream: up}, "reclone upstream=n2"},
		{BeginPromotion{Promotion: prom}, `begin-promotion promotion="` + prom.String() + `"`},
		{Fence{Target: "n1"}, "fence target=n1"},
		{ProceedUnfenced{Target: "n1", Reason: "best-effort"}, "proceed-unfenced target=n1"},
		{Publish{}, "publish"},
		{RecordRefusal{Epoch: 6, OldPrimary: "n2", Reason: "flapping"}, "record-refusal epoch=6"},
	}
}

// TestActionStrings: every action renders as the logs, the scenario tests
// and their golden files expect, fields left out when unset.
func TestActionStrings(t *testing.T) {
	for _, c := range allActions() {
		if got := c.act.String(); got != c.want {
			t.Errorf("%T renders %q, want %q", c.act, got, c.want)
		}
	}
	more := []struct {
		act  Action
		want string
	}{
		{StartReplica{}, "start-replica"},
		{Stop{Mode: db.StopImmediate}, "stop mode=immediate"},
		{Stop{}, "stop"},
		{AcquireLeader{}, "acquire-leader"},
		{AcquireLeader{Evidence: &cluster.Evidence{}}, "acquire-leader"},
		{RecordFailover{}, "record-failover"},
		{SetSyncStandbys{Choice: SyncAny}, "set-sync-standbys names=[] any"},
		{SetSyncRecord{}, "set-sync-record names=[]"},
		{SetSyncRecord{Names: []string{"n2", "n3"}, Acking: []string{"n2"}, Async: true}, "set-sync-record names=[n2,n3] acking=[n2] async"},
		{SetFailsafeRecord{}, "set-failsafe-record delete"},
		{Fence{}, "fence"},
	}
	for _, c := range more {
		if got := c.act.String(); got != c.want {
			t.Errorf("%T renders %q, want %q", c.act, got, c.want)
		}
	}
}

// recorder is an Executor that records which method ran.
type recorder struct{ ran []string }

func (r *recorder) rec(name string) error {
	r.ran = append(r.ran, name)
	return errRecorded
}

var errRecorded = errors.New("recorded")

func (r *recorder) Initialize(context.Context, Step, Initialize) error { return r.rec("Initialize") }
func (r *recorder) Clone(context.Context, Step, Clone) error           { return r.rec("Clone") }
func (r *recorder) StartPrimary(context.Context, Step, StartPrimary) error {
	return r.rec("StartPrimary")
}
func (r *recorder) StartReplica(context.Context, Step, StartReplica) error {
	return r.rec("StartReplica")
}
func (r *recorder) Stop(context.Context, Step, Stop) error       { return r.rec("Stop") }
func (r *recorder) Demote(context.Context, Step, Demote) error   { return r.rec("Demote") }
func (r *recorder) Promote(context.Context, Step, Promote) error { return r.rec("Promote") }
func (r *recorder) Follow(context.Context, Step, Follow) error   { return r.rec("Follow") }
func (r *recorder) AcquireLeader(context.Context, Step, AcquireLeader) error {
	return r.rec("AcquireLeader")
}
func (r *recorder) ReleaseLeader(context.Context, Step, ReleaseLeader) error {
	return r.rec("ReleaseLeader")
}
func (r *recorder) RecordFailover(context.Context, Step, RecordFailover) error {
	return r.rec("RecordFailover")
}
func (r *recorder) RecordRefusal(context.Context, Step, RecordRefusal) error {
	return r.rec("RecordRefusal")
}
func (r *recorder) MarkCannotFollow(context.Context, Step, MarkCannotFollow) error {
	return r.rec("MarkCannotFollow")
}
func (r *recorder) Handoff(context.Context, Step, Handoff) error { return r.rec("Handoff") }
func (r *recorder) ClearRequest(context.Context, Step, ClearRequest) error {
	return r.rec("ClearRequest")
}
func (r *recorder) SetSyncStandbys(context.Context, Step, SetSyncStandbys) error {
	return r.rec("SetSyncStandbys")
}
func (r *recorder) SetFailsafeRecord(context.Context, Step, SetFailsafeRecord) error {
	return r.rec("SetFailsafeRecord")
}
func (r *recorder) SetSyncRecord(context.Context, Step, SetSyncRecord) error {
	return r.rec("SetSyncRecord")
}
func (r *recorder) SetAcknowledging(context.Context, Step, SetAcknowledging) error {
	return r.rec("SetAcknowledging")
}
func (r *recorder) Detach(context.Context, Step, Detach) error { return r.rec("Detach") }
func (r *recorder) CreateSlots(context.Context, Step, CreateSlots) error {
	return r.rec("CreateSlots")
}
func (r *recorder) DropSlots(context.Context, Step, DropSlots) error { return r.rec("DropSlots") }
func (r *recorder) Rewind(context.Context, Step, Rewind) error       { return r.rec("Rewind") }
func (r *recorder) Reclone(context.Context, Step, Reclone) error     { return r.rec("Reclone") }
func (r *recorder) BeginPromotion(context.Context, Step, BeginPromotion) error {
	return r.rec("BeginPromotion")
}
func (r *recorder) Fence(context.Context, Step, Fence) error { return r.rec("Fence") }
func (r *recorder) ProceedUnfenced(context.Context, Step, ProceedUnfenced) error {
	return r.rec("ProceedUnfenced")
}
func (r *recorder) Publish(context.Context, Step, Publish) error { return r.rec("Publish") }

// TestEveryActionHasOneExecutor: the table lists one action per Executor
// method, their names are unique, and each action's Execute runs the
// Executor method of its own type (and returns its error), exactly once.
func TestEveryActionHasOneExecutor(t *testing.T) {
	acts := allActions()
	if n := reflect.TypeFor[Executor]().NumMethod(); n != len(acts) {
		t.Fatalf("Executor has %d methods but allActions lists %d action types: list the new type", n, len(acts))
	}
	names := map[string]bool{}
	ran := map[string]bool{}
	for _, c := range acts {
		name := actionName(c.act)
		if names[name] {
			t.Errorf("two action types render as %q", name)
		}
		names[name] = true
		r := &recorder{}
		if err := c.act.Execute(context.Background(), Step{}, r); !errors.Is(err, errRecorded) {
			t.Errorf("%s: Execute returned %v, not its executor's error", name, err)
		}
		typ := reflect.TypeOf(c.act).Name()
		if len(r.ran) != 1 || r.ran[0] != typ {
			t.Errorf("%s (%s) ran executor methods %v, want [%s]", name, typ, r.ran, typ)
		}
		if ran[typ] {
			t.Errorf("type %s listed twice", typ)
		}
		ran[typ] = true
	}
}

// TestLongActions: exactly the actions that copy or rewrite the database
// run in the background.
func TestLongActions(t *testing.T) {
	var long []string
	for _, c := range allActions() {
		if c.act.Long() {
			long = append(long, actionName(c.act))
		}
	}
	if got := strings.Join(long, ","); got != "clone,rewind,reclone" {
		t.Errorf("long actions: %s, want clone,rewind,reclone", got)
	}
}
