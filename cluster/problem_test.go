package cluster

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestMemberProblemJSON: a member record carries its problem code as
// "problem", absent when there is none; records written before the field
// existed decode with ProblemNone, and a code this version does not know
// is kept.
func TestMemberProblemJSON(t *testing.T) {
	var old Member
	if err := json.Unmarshal([]byte(`{"name":"n1","role":"primary","state":"running","reason":"x","position":{"lsn":"0/10","timeline":1},"lag_bytes":0}`), &old); err != nil {
		t.Fatalf("a record without a problem: %v", err)
	}
	if old.Problem != ProblemNone || old.Name != "n1" {
		t.Errorf("a record without a problem decoded as %+v", old)
	}
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"problem"`) {
		t.Errorf("no problem, but the record says %s", b)
	}
	old.Problem = ProblemDurabilityAtRisk
	if b, err = json.Marshal(old); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"problem":"durability_at_risk"`) {
		t.Errorf("record %s lacks the problem code", b)
	}
	var newer Member
	if err := json.Unmarshal([]byte(`{"name":"n2","problem":"some_newer_code"}`), &newer); err != nil || newer.Problem != "some_newer_code" {
		t.Errorf("unknown code: %v, %q", err, newer.Problem)
	}
	if _, known := newer.Problem.Info(); known {
		t.Error("Info knows a code outside the table")
	}
}

// TestProblemTable: every code is a distinct, non-empty snake_case word
// with a meaning and an action, and docs/design.md lists every one.
func TestProblemTable(t *testing.T) {
	doc, err := os.ReadFile("../docs/design.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[Problem]bool{}
	for _, i := range ProblemTable() {
		if i.Code == ProblemNone || strings.Trim(string(i.Code), "abcdefghijklmnopqrstuvwxyz_") != "" {
			t.Errorf("code %q: want a non-empty snake_case word", i.Code)
		}
		if seen[i.Code] {
			t.Errorf("code %q listed twice", i.Code)
		}
		seen[i.Code] = true
		if i.Meaning == "" || i.Action == "" {
			t.Errorf("code %q: meaning or action missing", i.Code)
		}
		if got, ok := i.Code.Info(); !ok || got.Code != i.Code {
			t.Errorf("Info(%q) = %+v, %v", i.Code, got, ok)
		}
		if !strings.Contains(string(doc), "| `"+string(i.Code)+"` |") {
			t.Errorf("docs/design.md has no row for %s", i.Code)
		}
	}
	if _, ok := ProblemNone.Info(); ok {
		t.Error("ProblemNone has a row")
	}
}
