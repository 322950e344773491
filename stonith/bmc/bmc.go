// Package bmc fences a machine through its baseboard management
// controller with bmclib (github.com/bmc-toolbox/bmclib/v2): IPMI through
// bmclib's ipmitool provider, Redfish through its gofish provider. Exactly
// one provider is used per driver, chosen by the protocol, so bmclib never
// falls back to another protocol than the one configured.
//
// A fence reads the power state; if it is not off, it sends a hard power
// off (IPMI "chassis power off", Redfish ResetType ForceOff), then reads
// the state back until it is off or the deadline passes. Only a state read
// back as off confirms the fence; anything else is an error.
package bmc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/providers/ipmitool"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"

	"github.com/hamgr/hamgr/stonith"
)

// Protocol is how the driver talks to the BMC.
type Protocol int

// Protocols.
const (
	// IPMI is IPMI v2.0 (lanplus) through the ipmitool program.
	IPMI Protocol = iota + 1
	// Redfish is Redfish over HTTPS.
	Redfish
)

// String names the protocol as the configuration does.
func (p Protocol) String() string {
	switch p {
	case IPMI:
		return "ipmi"
	case Redfish:
		return "redfish"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// provider is bmclib's name of the protocol's provider.
func (p Protocol) provider() string {
	if p == Redfish {
		return redfish.ProviderName
	}
	return ipmitool.ProviderName
}

// Defaults.
const (
	DefaultTimeout      = 30 * time.Second
	DefaultPollInterval = 500 * time.Millisecond
	DefaultIPMIPort     = 623
	DefaultRedfishPort  = 443
)

// TLSVerify says how a Redfish driver checks the BMC's certificate.
type TLSVerify int

// TLS verification modes.
const (
	// TLSVerifyCA verifies the certificate against Options.RootCAs.
	TLSVerifyCA TLSVerify = iota + 1
	// TLSInsecure accepts any certificate (self-signed BMC certificates);
	// a machine in the middle could then fake a confirmation.
	TLSInsecure
)

// Options configure a Driver.
type Options struct {
	// Protocol is IPMI or Redfish.
	Protocol Protocol
	// Host is the BMC's address; Port its port (DefaultIPMIPort or
	// DefaultRedfishPort when 0).
	Host string
	Port int
	// Username and Password are the BMC credentials.
	Username string
	Password string
	// Timeout bounds one fence (DefaultTimeout when 0); the caller's
	// context deadline applies too, whichever is earlier.
	Timeout time.Duration
	// PollInterval is the pause between two power-state reads after the
	// power off (DefaultPollInterval when 0).
	PollInterval time.Duration
	// IPMI: IpmitoolPath is the ipmitool program (bmclib finds it on PATH
	// when ""); CipherSuite the lanplus cipher suite ("3" when "": trying
	// others costs seconds per call on BMCs that do not list theirs).
	IpmitoolPath string
	CipherSuite  string
	// Redfish: TLS and, for TLSVerifyCA, the CAs to trust (the system's
	// when nil). SystemName picks the ComputerSystem when the BMC has
	// several.
	TLS        TLSVerify
	RootCAs    *x509.CertPool
	SystemName string
	// Logger receives the driver's progress; slog.Default when nil.
	Logger *slog.Logger
}

// Driver is a stonith.Fencer for one machine's BMC.
type Driver struct {
	opts Options
	log  *slog.Logger
}

// New checks opts and returns a Driver.
func New(opts Options) (*Driver, error) {
	switch opts.Protocol {
	case IPMI:
		if opts.Port == 0 {
			opts.Port = DefaultIPMIPort
		}
		if opts.CipherSuite == "" {
			opts.CipherSuite = "3"
		}
	case Redfish:
		if opts.Port == 0 {
			opts.Port = DefaultRedfishPort
		}
		if opts.TLS != TLSVerifyCA && opts.TLS != TLSInsecure {
			return nil, errors.New("redfish: say how to check the BMC's certificate (TLSVerifyCA or TLSInsecure)")
		}
	default:
		return nil, fmt.Errorf("bmc: unknown protocol %v", opts.Protocol)
	}
	if opts.Host == "" {
		return nil, errors.New("bmc: no host")
	}
	if opts.Port < 1 || opts.Port > 65535 {
		return nil, fmt.Errorf("bmc: port %d out of range (1-65535)", opts.Port)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{opts: opts, log: log.With("bmc", opts.address(), "protocol", opts.Protocol.String())}, nil
}

func (o Options) address() string { return net.JoinHostPort(o.Host, strconv.Itoa(o.Port)) }

// client builds a bmclib client limited to the protocol's provider.
func (d *Driver) client() *bmclib.Client {
	o := d.opts
	port := strconv.Itoa(o.Port)
	var opts []bmclib.Option
	switch o.Protocol {
	case IPMI:
		opts = append(opts, bmclib.WithIpmitoolPort(port), bmclib.WithIpmitoolCipherSuite(o.CipherSuite))
		if o.IpmitoolPath != "" {
			opts = append(opts, bmclib.WithIpmitoolPath(o.IpmitoolPath))
		}
	case Redfish:
		opts = append(opts, bmclib.WithRedfishPort(port))
		if o.SystemName != "" {
			opts = append(opts, bmclib.WithRedfishSystemName(o.SystemName))
		}
		if o.TLS == TLSVerifyCA {
			opts = append(opts, bmclib.WithSecureTLS(o.RootCAs))
		}
	}
	cl := bmclib.NewClient(o.Host, o.Username, o.Password, opts...)
	cl.Registry.Drivers = cl.Registry.For(o.Protocol.provider())
	return cl
}

// Fence powers the machine off and confirms it by reading the power state
// back. A machine already off is confirmed without a power off. It returns
// by the deadline even when the BMC does not answer: bmclib's Redfish
// requests do not follow the context (only an HTTP timeout set when the
// connection opens), so the work runs on its own goroutine, which ends by
// that timeout.
func (d *Driver) Fence(ctx context.Context, target stonith.Target) (stonith.Confirmation, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	type result struct {
		c   stonith.Confirmation
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := d.fence(ctx, target)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-ctx.Done():
	}
	// ipmitool is killed at the deadline and reports at once: prefer its
	// error, which says more.
	t := time.NewTimer(lateResult)
	defer t.Stop()
	select {
	case r := <-done:
		return r.c, r.err
	case <-t.C:
		return stonith.Confirmation{}, fmt.Errorf("%s %s: no answer from the BMC by the deadline: %w", d.opts.Protocol, d.opts.address(), ctx.Err())
	}
}

// lateResult is how long Fence waits, past the deadline, for the work's
// own error.
const lateResult = 200 * time.Millisecond

// fence does Fence's work.
func (d *Driver) fence(ctx context.Context, target stonith.Target) (stonith.Confirmation, error) {
	method := d.opts.Protocol.String() + " power off"
	cl := d.client()
	if err := cl.Open(ctx); err != nil {
		return stonith.Confirmation{}, fmt.Errorf("%w; check %s", d.wrap(ctx, "connect", err), d.connectHint())
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer ccancel()
		_ = cl.Close(cctx)
	}()
	state, err := d.powerState(ctx, cl)
	if err != nil {
		return stonith.Confirmation{}, d.wrap(ctx, "read power state", err)
	}
	if state == "off" {
		d.log.Info("fence: power already off", "target", target.Name)
		return stonith.Confirmation{Method: method, Detail: "power state read back: off (already off, no power off sent)"}, nil
	}
	d.log.Info("fence: powering off", "target", target.Name, "power", state)
	start := time.Now()
	if ok, err := cl.SetPowerState(ctx, "off"); err != nil || !ok {
		if err == nil {
			err = errors.New("the BMC did not accept the power off")
		}
		return stonith.Confirmation{}, d.wrap(ctx, "power off", err)
	}
	return d.confirmOff(ctx, cl, method, start)
}

// connectHint names the protocol's own settings that make a connection
// fail.
func (d *Driver) connectHint() string {
	if d.opts.Protocol == IPMI {
		return "the address, port, username, password and cipher suite " + d.opts.CipherSuite + ", and that IPMI over LAN is enabled on the BMC"
	}
	return "the address, port, username and password, and the BMC's certificate"
}

// confirmOff reads the power state until it is off or ctx ends.
func (d *Driver) confirmOff(ctx context.Context, cl *bmclib.Client, method string, start time.Time) (stonith.Confirmation, error) {
	var last string
	var lastErr error
	for {
		state, err := d.powerState(ctx, cl)
		switch {
		case err == nil && state == "off":
			took := time.Since(start).Round(time.Millisecond)
			d.log.Info("fence: power off confirmed", "took", took)
			return stonith.Confirmation{Method: method, Detail: fmt.Sprintf("power state read back: off (%v after the power off)", took)}, nil
		case err != nil:
			lastErr = err
		default:
			last, lastErr = state, nil
		}
		t := time.NewTimer(d.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			if lastErr != nil {
				return stonith.Confirmation{}, d.wrap(ctx, "read power state back", lastErr)
			}
			return stonith.Confirmation{}, fmt.Errorf("%s %s: power off sent but the power state still read %q when the deadline passed: %w",
				d.opts.Protocol, d.opts.address(), last, ctx.Err())
		case <-t.C:
		}
	}
}

// powerState reads the power state, normalised to "on", "off" or the
// provider's own word.
func (d *Driver) powerState(ctx context.Context, cl *bmclib.Client) (string, error) {
	s, err := cl.GetPowerState(ctx)
	if err != nil {
		return "", err
	}
	return normalise(s), nil
}

// normalise maps ipmitool's "Chassis Power is off\n" and Redfish's "Off"
// to "off" (and the like for on); other states (Redfish "PoweringOff",
// say) are returned lower-cased.
func normalise(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimPrefix(s, "chassis power is ")
	return s
}

// wrap names the BMC and the step in err, and the deadline when it passed.
// The password is removed in case a provider's message carries it.
func (d *Driver) wrap(ctx context.Context, step string, err error) error {
	// bmclib joins its providers' errors over several lines.
	msg := strings.Join(strings.Fields(err.Error()), " ")
	if d.opts.Password != "" {
		msg = strings.ReplaceAll(msg, d.opts.Password, "[redacted]")
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s %s: %s: %s: %w", d.opts.Protocol, d.opts.address(), step, msg, ctx.Err())
	}
	return fmt.Errorf("%s %s: %s: %s", d.opts.Protocol, d.opts.address(), step, msg)
}
