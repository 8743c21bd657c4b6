package usbmuxd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// PairRecordStore keeps pair records in the daemon, the way
// libimobiledevice does (ReadPairRecord/SavePairRecord/DeletePairRecord/
// ReadBUID, libimobiledevice-client-needs.md §1.7). It satisfies the
// lockdown package's PairRecordStore interface.
type PairRecordStore struct {
	Client *Client
}

// PairRecords returns a PairRecordStore backed by c.
func (c *Client) PairRecords() *PairRecordStore { return &PairRecordStore{Client: c} }

// LoadPairRecord reads and parses the record for udid; a missing record is
// an error wrapping pairrecord.ErrNotFound.
func (p *PairRecordStore) LoadPairRecord(ctx context.Context, udid string) (*pairrecord.Record, error) {
	b, err := p.Client.ReadPairRecord(ctx, udid)
	if err != nil {
		return nil, err
	}
	r, err := pairrecord.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("usbmuxd: pair record for %s: %w", udid, err)
	}
	return r, nil
}

// SavePairRecord stores r as a binary plist, as libimobiledevice sends it.
// If the device is attached, its ID goes along so the daemon reports
// Paired to listeners.
func (p *PairRecordStore) SavePairRecord(ctx context.Context, udid string, r *pairrecord.Record) error {
	b, err := plistconn.Marshal(r, plistconn.Binary)
	if err != nil {
		return fmt.Errorf("usbmuxd: %w", err)
	}
	var id uint32
	if d, err := p.Client.Device(ctx, udid); err == nil {
		id = d.ID
	} else if ctx.Err() != nil {
		return fmt.Errorf("usbmuxd: %w", ctx.Err())
	}
	return p.Client.SavePairRecord(ctx, udid, b, id)
}

// DeletePairRecord removes the record; a missing record is an error
// wrapping pairrecord.ErrNotFound.
func (p *PairRecordStore) DeletePairRecord(ctx context.Context, udid string) error {
	return p.Client.DeletePairRecord(ctx, udid)
}

// SystemBUID returns the daemon's SystemBUID.
func (p *PairRecordStore) SystemBUID(ctx context.Context) (string, error) {
	return p.Client.ReadBUID(ctx)
}

// DeviceDialer opens streams to the ports of one device through the daemon.
// It satisfies the lockdown package's Dialer interface. The device is found
// by UDID; its ID is remembered and looked up again if the daemon no longer
// knows it (the phone was replugged).
type DeviceDialer struct {
	Client *Client
	UDID   string

	mu sync.Mutex
	id uint32
}

// Dialer returns a DeviceDialer for the device with the given UDID.
func (c *Client) Dialer(udid string) *DeviceDialer {
	return &DeviceDialer{Client: c, UDID: udid}
}

// Dial connects to port (host byte order) of the device.
func (d *DeviceDialer) Dial(ctx context.Context, port uint16) (net.Conn, error) {
	d.mu.Lock()
	id := d.id
	d.mu.Unlock()
	if id != 0 {
		conn, err := d.Client.Connect(ctx, id, port)
		if !errors.Is(err, ErrBadDevice) {
			return conn, err
		}
	}
	dev, err := d.Client.Device(ctx, d.UDID)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.id = dev.ID
	d.mu.Unlock()
	return d.Client.Connect(ctx, dev.ID, port)
}
