package lockdown

import (
	"context"
	"errors"
	"fmt"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

// Pair pairs this host with the device and saves the new record in store
// under udid (usb-usbmux-lockdown.md §5.4, libimobiledevice-client-needs.md
// §2.6): read DevicePublicKey and WiFiAddress (before Pair: iOS 7 dropped
// the connection after pairing, pitfall 31), generate the keys and
// certificates, then send Pair with ExtendedPairingErrors and repeat it
// every PairInterval while the Trust dialog is pending, up to PairTimeout.
// The record saved holds the reply's EscrowBag and WiFiMACAddress.
//
// Errors: ErrPairingTimeout (dialog not answered), *Error with
// UserDeniedPairing, PasswordProtected (locked: unlock first), ... — see
// Error.Hint. Pair does not need and does not start a session.
func (c *Client) Pair(ctx context.Context, store PairRecordStore, udid string) (*pairrecord.Record, error) {
	if err := pairrecord.CheckUDID(udid); err != nil {
		return nil, fmt.Errorf("lockdown: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, err := c.getValue(ctx, "", "DevicePublicKey")
	if err != nil {
		return nil, fmt.Errorf("lockdown: reading DevicePublicKey: %w", err)
	}
	pub, ok := v.([]byte)
	if !ok {
		return nil, fmt.Errorf("lockdown: DevicePublicKey is %T, not data", v)
	}
	var wifi string
	if v, err := c.getValue(ctx, "", "WiFiAddress"); err == nil {
		wifi, _ = v.(string)
	}
	buid, err := store.SystemBUID(ctx)
	if err != nil {
		return nil, fmt.Errorf("lockdown: reading SystemBUID: %w", err)
	}
	rec, err := GenerateRecord(pub, buid, c.opts.Now(), c.opts.GenerateKey)
	if err != nil {
		return nil, err
	}
	req := &Request{
		Request:         "Pair",
		PairRecord:      pairRecordMsg(rec, false),
		ProtocolVersion: ProtocolVersion,
		PairingOptions:  &PairingOptions{ExtendedPairingErrors: true},
		HostName:        c.opts.HostName,
	}
	deadline := c.opts.Now().Add(c.opts.PairTimeout)
	for {
		resp, err := c.exchange(ctx, req, "Pair")
		if err == nil {
			rec.EscrowBag = resp.EscrowBag
			rec.WiFiMACAddress = wifi
			break
		}
		if !errors.Is(err, ErrPairingDialogResponsePending) {
			return nil, err
		}
		if !c.opts.Now().Before(deadline) {
			return nil, fmt.Errorf("%w (waited %v)", ErrPairingTimeout, c.opts.PairTimeout)
		}
		c.log.Debug("lockdown: trust dialog pending")
		if err := c.opts.Sleep(ctx, c.opts.PairInterval); err != nil {
			return nil, fmt.Errorf("lockdown: Pair: %w", err)
		}
	}
	if err := store.SavePairRecord(ctx, udid, rec); err != nil {
		return nil, fmt.Errorf("lockdown: paired, but saving the pair record failed: %w", err)
	}
	return rec, nil
}

// ValidatePair asks the device whether it still knows rec's HostID. Only
// iOS < 7 hosts need it before StartSession (§5.3); an unknown HostID is
// ErrInvalidHostID.
func (c *Client) ValidatePair(ctx context.Context, rec *pairrecord.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.exchange(ctx, &Request{
		Request:         "ValidatePair",
		PairRecord:      pairRecordMsg(rec, true),
		ProtocolVersion: ProtocolVersion,
	}, "ValidatePair")
	return err
}

// Unpair removes the host's pairing from the device and, when the device
// agreed, deletes the record from store. Some firmware echoes
// "ValidatePair" in the reply, so the echo is not checked (pitfall 24).
// Without a stored record the result is ErrInvalidHostID, as idevicepair
// reports it.
func (c *Client) Unpair(ctx context.Context, store PairRecordStore, udid string) error {
	rec, err := store.LoadPairRecord(ctx, udid)
	if errors.Is(err, pairrecord.ErrNotFound) {
		return fmt.Errorf("%w: no pair record for %s on this host", &Error{Request: "Unpair", Code: "InvalidHostID"}, udid)
	}
	if err != nil {
		return fmt.Errorf("lockdown: %w", err)
	}
	c.mu.Lock()
	_, err = c.exchange(ctx, &Request{
		Request:         "Unpair",
		PairRecord:      pairRecordMsg(rec, true),
		ProtocolVersion: ProtocolVersion,
	}, "")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if err := store.DeletePairRecord(ctx, udid); err != nil && !errors.Is(err, pairrecord.ErrNotFound) {
		return fmt.Errorf("lockdown: unpaired, but deleting the pair record failed: %w", err)
	}
	return nil
}
