package stonith

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Members fences each member through the driver configured for it: a map
// from member name to that member's Fencer. A member with no entry is
// never fenced: Fence refuses it, naming the member and the configuration
// key that would configure it.
type Members map[string]Fencer

// Fence fences target through the Fencer configured for target.Name.
func (m Members) Fence(ctx context.Context, target Target) (Confirmation, error) {
	f, ok := m[target.Name]
	if !ok || f == nil {
		return Confirmation{}, &NotConfiguredError{Member: target.Name, Configured: m.Names()}
	}
	c, err := f.Fence(ctx, target)
	if err != nil {
		return Confirmation{}, fmt.Errorf("fence member %s: %w", target.Name, err)
	}
	return c, nil
}

// Names returns the names of the members that have a fencer, sorted.
func (m Members) Names() []string {
	names := make([]string, 0, len(m))
	for n, f := range m {
		if f != nil {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return names
}

// NotConfiguredError is Members.Fence's error for a member that has no
// fencing configured.
type NotConfiguredError struct {
	// Member is the member that was to be fenced.
	Member string
	// Configured are the members that do have a fencer.
	Configured []string
}

func (e *NotConfiguredError) Error() string {
	have := "none"
	if len(e.Configured) > 0 {
		have = strings.Join(e.Configured, ", ")
	}
	return fmt.Sprintf("no fencing configured for member %q (configured: %s): add fencing.members.%s (driver, address, credentials) to the config file of every member that may be promoted",
		e.Member, have, e.Member)
}
