// Package sdnotify tells systemd about the agent (a Type=notify service),
// through the sd_notify protocol of github.com/coreos/go-systemd/v22/daemon
// (datagrams to the socket systemd names in $NOTIFY_SOCKET; nothing is
// sent without one):
//
//   - READY=1 after the agent's first round (so `systemctl start` returns
//     once the agent has looked at the store and its database, and units
//     ordered after it start then), with the first STATUS;
//   - STATUS=... whenever the role, the leader's epoch or the member's
//     state changes (shown by `systemctl status hamgr`);
//   - WATCHDOG=1 after a round, at most every half of $WATCHDOG_USEC
//     (WatchdogSec=): the pings come from the loop itself, so a loop that
//     stops completing rounds is killed (SIGABRT) and restarted by systemd;
//   - STOPPING=1 when the clean stop begins.
//
// Notifier implements agent.RoundObserver. MinWatchdog is the least
// WatchdogSec for a timing.
package sdnotify
