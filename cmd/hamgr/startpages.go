package main

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// startupPagesDelay is how long after the agent starts its loop it calls
// releaseStartupPages: long enough for the first rounds (a lease, the first
// reads, the first probes), whose one-time code would otherwise stay mapped
// too.
const startupPagesDelay = 30 * time.Second

// releaseStartupPages drops this process's mappings of its own executable's
// code and read-only data (MADV_DONTNEED on the hamgr binary's r-xp and
// r--p mappings), once start-up is over (startupPagesDelay).
//
// Why: the package initialisers of everything linked into hamgr (the
// embedded etcd server, gRPC, the protobuf registries, cobra, ...) touch
// about 26 MiB of the binary at start, most of which an agent never runs
// again; those pages stay mapped, so they count in its RSS for ever (10 of
// an idle agent's 34 MiB). Why it is safe: these are private, read-only
// mappings of a file that nothing writes, so dropping them loses nothing;
// the next access to a dropped page faults it back from the page cache
// (it is still there while any process maps it, and is read from the
// binary otherwise), just as after the kernel reclaimed it under memory
// pressure. The writable data segment, the heap and the stacks are left
// alone. A failure only costs the saving, so it is logged and ignored.
func releaseStartupPages(log *slog.Logger) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		log.Debug("not releasing start-up pages", "err", err)
		return
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		log.Debug("not releasing start-up pages", "err", err)
		return
	}
	defer f.Close()
	var released uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// "start-end perms offset dev inode path"
		fl := strings.Fields(sc.Text())
		if len(fl) < 6 || fl[5] != exe || (fl[1] != "r-xp" && fl[1] != "r--p") {
			continue
		}
		lo, hi, err := parseRange(fl[0])
		if err != nil {
			log.Debug("not releasing start-up pages", "err", err)
			return
		}
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), unix.MADV_DONTNEED); errno != 0 {
			log.Debug("not releasing start-up pages", "range", fl[0], "err", errno)
			return
		}
		// Fault pages back one at a time: without this the kernel maps
		// the neighbours of each faulting page too (fault-around, 64 KiB),
		// and the scattered code and tables an idle agent uses bring
		// back most of the binary.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(lo), uintptr(hi-lo), unix.MADV_RANDOM); errno != 0 {
			log.Debug("not marking the binary's pages for random access", "range", fl[0], "err", errno)
		}
		released += hi - lo
	}
	log.Debug("released the start-up pages of the hamgr binary", "mapped_bytes", released)
}

// parseRange parses "start-end" of /proc/PID/maps (hexadecimal).
func parseRange(s string) (uint64, uint64, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.ParseUint(a, 16, 64)
	hi, err2 := strconv.ParseUint(b, 16, 64)
	if !ok || err1 != nil || err2 != nil || hi < lo {
		return 0, 0, fmt.Errorf("unparsable mapping range %q", s)
	}
	return lo, hi, nil
}
