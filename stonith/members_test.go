package stonith_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hamgr/hamgr/stonith"
)

type fakeFencer struct{ calls *[]string }

func (f fakeFencer) Fence(_ context.Context, t stonith.Target) (stonith.Confirmation, error) {
	*f.calls = append(*f.calls, t.Name)
	return stonith.Confirmation{Method: "fake"}, nil
}

func TestMembersDispatches(t *testing.T) {
	var calls []string
	m := stonith.Members{"pg1": fakeFencer{&calls}, "pg2": fakeFencer{&calls}}
	if _, err := m.Fence(context.Background(), stonith.Target{Name: "pg2"}); err != nil {
		t.Fatal(err)
	}
	if len(calls) != 1 || calls[0] != "pg2" {
		t.Errorf("calls %v, want [pg2]", calls)
	}
}

func TestMembersRefusesUnconfigured(t *testing.T) {
	var calls []string
	m := stonith.Members{"pg1": fakeFencer{&calls}}
	_, err := m.Fence(context.Background(), stonith.Target{Name: "pg3"})
	var nc *stonith.NotConfiguredError
	if !errors.As(err, &nc) || nc.Member != "pg3" {
		t.Fatalf("err %v, want a NotConfiguredError for pg3", err)
	}
	for _, s := range []string{`"pg3"`, "fencing.members.pg3", "pg1"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
	if len(calls) != 0 {
		t.Errorf("a fencer was called: %v", calls)
	}
}
