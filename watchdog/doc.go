// Package watchdog arms a Linux watchdog device (/dev/watchdog: softdog or
// hardware) while this member is the primary, so that a primary whose agent
// dies or hangs is reset before its leader lease can expire in etcd and a
// replica be promoted beside it.
//
// # Protocol
//
// Opening the device arms it; WDIOC_SETTIMEOUT sets its timeout; every
// write (or WDIOC_KEEPALIVE) restarts the countdown; writing 'V' and then
// closing the file disarms it (the "magic close"). A close without the 'V'
// (the agent crashed) leaves it armed: the machine resets when the
// countdown ends. Device is the seam: the real one (Open) does exactly
// that; tests use a double that records the calls and never touch a real
// device.
//
// # Timing
//
// The watchdog is kicked only by the agent's loop (Watchdog implements
// agent.RoundObserver), after a round that kept this member leading. The
// store cannot expire the lease before lastRenewSent + ttl on the agent's
// clock (see detector.FenceDeadline). A kick at time k makes the device
// fire at k + T at the latest, T the timeout; so each kick, and the arming,
// is done only if
//
//	k + T <= lastRenewSent + ttl - Margin,
//
// which makes every kick safe by itself: whatever happens after it (the
// agent killed, frozen, deadlocked), the machine resets Margin before the
// lease can expire, and no other member can have been promoted while this
// one still took writes. T is derived from the dynamic configuration (see
// Timeout) so that the condition holds in steady state, where a renewal is
// sent every loop_wait and takes at most retry_timeout/2:
//
//	T = ttl - loop_wait - retry_timeout/2 - Margin   (whole seconds, rounded down)
//
// and it must exceed loop_wait + Margin, or the loop's own rhythm would let
// the device fire on a healthy primary (Timeout refuses such timing). With
// the default timing (ttl 10s, loop_wait 2s, retry_timeout 5s) T is 4s.
// A round stalled longer than T - loop_wait (2s there), or renewals failing
// for longer, resets the primary: a watchdog trades that availability for
// the certainty above; a longer ttl buys slack.
//
// # Arming and disarming
//
// The device is armed after the first round in which this member leads
// (its database was promoted in that round or is being promoted), and
// disarmed with the magic close when a round finds it no longer leading
// and its database no longer answering as a primary (demoted, stopped),
// when the fence timer has stopped the database (agent.PhaseFenced), and
// when the clean stop is about to stop the database (agent.PhaseStopping:
// the stop, once begun, finishes without the agent, and no round kicks
// while it runs) or the agent has stopped. While a member that lost the
// lead still answers as a primary, the device is neither kicked nor
// disarmed: unless the agent's fence stops the database, the machine
// resets.
//
// # Modes
//
// ModeOff never opens the device. ModeAutomatic arms it where it can and
// logs an error where it cannot. ModeRequired refuses to lead without it:
// where Check finds no usable device at start the caller advertises the
// nofailover tag (the member is never elected); where arming fails after
// this member became the leader (the device busy, its timeout not
// settable), Watchdog calls Options.OnRequiredFailure once, and the agent
// stops as on_stop says (a primary hands over to the best replica): the
// only way the observer has to stop leading, and one that loses no
// acknowledged write.
package watchdog
