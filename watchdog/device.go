package watchdog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultDevice is the Linux watchdog device.
const DefaultDevice = "/dev/watchdog"

// Device is an open, armed watchdog device. Tests give Options.Open a
// double that records the calls; Open is the real one.
type Device interface {
	// SetTimeout asks the device to fire d (whole seconds) after the
	// latest keepalive, and returns the timeout in effect afterwards (a
	// device may round it); it restarts the countdown.
	SetTimeout(d time.Duration) (time.Duration, error)
	// Keepalive restarts the countdown.
	Keepalive() error
	// Disarm stops the countdown with the magic close ('V' written, then
	// the file closed). The Device is unusable afterwards, whatever the
	// error.
	Disarm() error
}

// Opener opens and thereby arms the device at path.
type Opener func(path string) (Device, error)

// ErrNoDevice is returned by Check for a path that does not exist.
var ErrNoDevice = errors.New("no watchdog device")

// sysfsWatchdogs is where Linux describes each watchdog device.
const sysfsWatchdogs = "/sys/class/watchdog"

// Check reports whether path looks like a watchdog device this process
// could open and disarm again, without opening it (opening arms it): it
// must exist and be writable by this process, and its driver must not be
// in nowayout mode (/sys/class/watchdog/NAME/nowayout), where the magic
// close does not disarm it and a demoted or stopped primary's machine
// would reset. The error names the path.
func Check(path string) error {
	if err := checkFile(path); err != nil {
		return err
	}
	return checkNowayout(sysfsWatchdogs, path)
}

// checkNowayout reads sysfs/NAME/nowayout for the device at path (the
// legacy /dev/watchdog is watchdog0); a device sysfs does not describe (a
// test double, an old kernel) passes.
func checkNowayout(sysfs, path string) error {
	name := filepath.Base(path)
	if name == "watchdog" {
		name = "watchdog0"
	}
	b, err := os.ReadFile(filepath.Join(sysfs, name, "nowayout"))
	if err != nil {
		return nil
	}
	if strings.TrimSpace(string(b)) != "0" {
		return fmt.Errorf("watchdog device %s cannot be disarmed (its driver runs with nowayout): a primary that steps down or stops would have its machine reset; load the driver with nowayout=0", path)
	}
	return nil
}

// checkFile is Check's look at the file itself.
func checkFile(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w (load softdog, or a hardware watchdog's driver)", path, ErrNoDevice)
	}
	if err != nil {
		return fmt.Errorf("watchdog device %s: %w", path, err)
	}
	if fi.IsDir() {
		return fmt.Errorf("watchdog device %s is a directory", path)
	}
	if err := unix.Access(path, unix.W_OK); err != nil {
		return fmt.Errorf("watchdog device %s is not writable by this process (uid %d): %w; grant it, e.g. with a udev rule", path, os.Getuid(), err)
	}
	return nil
}

// wdiocGetTimeout is _IOR('W', 7, int) from <linux/watchdog.h> (not in
// golang.org/x/sys/unix).
const wdiocGetTimeout = 0x80045707

// fileDevice is the real Device: the device file, written and ioctl'd.
type fileDevice struct {
	f *os.File
}

// Open opens (and so arms) the watchdog device at path: the real Opener.
func Open(path string) (Device, error) {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open watchdog device %s: %w", path, err)
	}
	return &fileDevice{f: f}, nil
}

// ioctl runs fn on the device's file descriptor.
func (d *fileDevice) ioctl(fn func(fd int) error) error {
	rc, err := d.f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// SetTimeout sets the timeout with WDIOC_SETTIMEOUT and reads back what
// the device took with WDIOC_GETTIMEOUT. On a file that is no watchdog
// device (ENOTTY) it fails: the timeout in effect is unknown.
func (d *fileDevice) SetTimeout(t time.Duration) (time.Duration, error) {
	secs := int(t / time.Second)
	if err := d.ioctl(func(fd int) error { return unix.IoctlSetPointerInt(fd, unix.WDIOC_SETTIMEOUT, secs) }); err != nil {
		return 0, fmt.Errorf("watchdog %s: set timeout %ds: %w", d.f.Name(), secs, err)
	}
	var got int
	err := d.ioctl(func(fd int) (err error) {
		got, err = unix.IoctlGetInt(fd, wdiocGetTimeout)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("watchdog %s: read back the timeout: %w", d.f.Name(), err)
	}
	return time.Duration(got) * time.Second, nil
}

// keepaliveByte is what Keepalive writes: any write restarts the
// countdown, and one without a 'V' also cancels an earlier magic byte.
const keepaliveByte = "1"

// Keepalive writes one byte: every watchdog driver takes a write as a
// keepalive, which makes it work on any device (and lets a test read it
// from a file).
func (d *fileDevice) Keepalive() error {
	if _, err := d.f.WriteString(keepaliveByte); err != nil {
		return fmt.Errorf("watchdog %s: keepalive: %w", d.f.Name(), err)
	}
	return nil
}

// Disarm writes the magic 'V' and closes the device.
func (d *fileDevice) Disarm() error {
	_, werr := d.f.WriteString("V")
	cerr := d.f.Close()
	if werr != nil {
		return fmt.Errorf("watchdog %s: magic close: %w (the device stays armed)", d.f.Name(), werr)
	}
	if cerr != nil {
		return fmt.Errorf("watchdog %s: close: %w", d.f.Name(), cerr)
	}
	return nil
}
