package usbmuxd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Command handling of the Server, following usbmuxd's client.c
// (usb-usbmux-lockdown.md §3.2–§3.6, corrections.md A1–A3, M-b).

type mode int

const (
	modeCommand mode = iota
	modeListen
	modeConnected
)

type next struct {
	mode mode
	dev  net.Conn // the device stream, in modeConnected
}

// Errors that end a client; they are returned by ServeConn.
var (
	errCommandWhileListening = errors.New("usbmuxd: command on a listening socket")
	errEarlyData             = errors.New("usbmuxd: client sent data before the Connect result")
	errSlowListener          = errors.New("usbmuxd: listening client fell too far behind")
)

// handle executes one command in command state.
func (s *Server) handle(ctx context.Context, c *client, fr *Frame) (next, error) {
	if fr.Version != ProtoBinary && fr.Version != ProtoPlist {
		// §3.2: any other header version gets BADVERSION in the client's
		// current protocol.
		return next{}, s.writeResult(c, fr.Tag, ResultBadVersion)
	}
	// Dispatch on the message type, not the header version: usbmuxd does
	// the same, so a binary LISTEN in a version-1 header still works.
	switch fr.Type {
	case TypePlist:
		// From the first plist message on, replies are plists (§3.2).
		c.proto = ProtoPlist
		return s.handlePlist(ctx, c, fr)
	case TypeListen:
		return next{mode: modeListen}, s.startListen(c, fr.Tag)
	case TypeConnect:
		req, err := ParseConnect(fr.Payload)
		if err != nil {
			return next{}, s.writeResult(c, fr.Tag, ResultBadCommand)
		}
		return s.connect(ctx, c, fr.Tag, req.DeviceID, req.Port)
	default:
		s.log.Debug("usbmuxd: unknown message type", "client", c.id, "type", fr.Type)
		return next{}, s.writeResult(c, fr.Tag, ResultBadCommand)
	}
}

func (s *Server) handlePlist(ctx context.Context, c *client, fr *Frame) (next, error) {
	req, err := ParseRequest(fr.Payload)
	if err != nil {
		// usbmuxd stays silent here and the client times out (A1); an error
		// result tells the client at once and keeps the socket usable.
		s.log.Debug("usbmuxd: bad plist request", "client", c.id, "err", err)
		return next{}, s.writeResult(c, fr.Tag, ResultBadCommand)
	}
	// usbmuxd remembers the identification keys of each request for
	// ListListeners (§3.4).
	s.mu.Lock()
	c.progName, c.bundleID, c.versionString, c.libVersion = req.ProgName, req.BundleID, req.ClientVersionString, req.LibUSBMuxVersion
	s.mu.Unlock()
	tag := fr.Tag
	switch req.MessageType {
	case MsgListen:
		return next{mode: modeListen}, s.startListen(c, tag)
	case MsgConnect:
		// Missing DeviceID → BADDEV, missing PortNumber → BADCOMMAND, in
		// that order, as usbmuxd checks them (§3.4 table).
		if !req.HasDeviceID {
			return next{}, s.writeResult(c, tag, ResultBadDevice)
		}
		if !req.HasPort {
			return next{}, s.writeResult(c, tag, ResultBadCommand)
		}
		return s.connect(ctx, c, tag, req.DeviceID, req.Port)
	case MsgListDevices:
		// Every entry is a full Attached dict; the reply itself has no
		// MessageType (libimobiledevice-client-needs.md §1.4).
		s.mu.Lock()
		devs := s.sortedDevices()
		s.mu.Unlock()
		reply := DeviceListReply{DeviceList: make([]AttachedMessage, 0, len(devs))}
		for _, d := range devs {
			reply.DeviceList = append(reply.DeviceList, d.attached())
		}
		return next{}, s.writePlist(c, tag, &reply)
	case MsgListListeners:
		return next{}, s.writePlist(c, tag, s.listeners())
	case MsgReadBUID:
		// Generated and saved on first use, like usbmuxd (§4.1).
		buid, err := s.systemBUID()
		if err != nil {
			s.log.Warn("usbmuxd: reading SystemBUID", "err", err)
			return next{}, s.writeResult(c, tag, ResultEIO)
		}
		return next{}, s.writePlist(c, tag, &BUIDReply{BUID: buid})
	case MsgReadPairRecord:
		return next{}, s.readPairRecord(c, tag, req)
	case MsgSavePairRecord:
		return next{}, s.savePairRecord(c, tag, req)
	case MsgDeletePairRecord:
		return next{}, s.deletePairRecord(c, tag, req)
	default:
		s.log.Debug("usbmuxd: unknown plist command", "client", c.id, "type", req.MessageType)
		return next{}, s.writeResult(c, tag, ResultBadCommand)
	}
}

// writeResult sends a Result in the client's current protocol.
func (s *Server) writeResult(c *client, tag uint32, code ResultCode) error {
	if c.proto == ProtoPlist {
		return s.writePlist(c, tag, &ResultMessage{MessageType: MsgResult, Number: uint64(code)})
	}
	return s.writeFrame(c, &Frame{Version: ProtoBinary, Type: TypeResult, Tag: tag, Payload: AppendResult(nil, code)})
}

// writePlist sends v as an XML plist message (libusbmuxd parses replies
// with plist_from_xml only).
func (s *Server) writePlist(c *client, tag uint32, v any) error {
	b, err := marshalXML(v)
	if err != nil {
		return err
	}
	return s.writeFrame(c, &Frame{Version: ProtoPlist, Type: TypePlist, Tag: tag, Payload: b})
}

// writeFrame writes one frame in a single Write (M-b2) under the write
// timeout, so a client that stops reading cannot hold its goroutine.
func (s *Server) writeFrame(c *client, fr *Frame) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(s.opts.WriteTimeout)); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("usbmuxd: conn has no write deadline", "err", err)
	}
	return c.fr.WriteFrame(fr)
}

// listeners builds the ListListeners reply. usbmuxd fills the number in
// "ID String" from the requesting client (a bug, §3.4); we use the
// listener's own number.
func (s *Server) listeners() *ListenerListReply {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ls []*client
	for c := range s.clients {
		if c.listening {
			ls = append(ls, c)
		}
	}
	slices.SortFunc(ls, func(a, b *client) int { return int(int64(a.id) - int64(b.id)) })
	out := &ListenerListReply{ListenerList: []ListenerInfo{}}
	for _, c := range ls {
		out.ListenerList = append(out.ListenerList, ListenerInfo{
			BundleID:         c.bundleID,
			IDString:         fmt.Sprintf("%d-%s", c.id, c.progName),
			ProgName:         c.progName,
			LibUSBMuxVersion: c.libVersion,
		})
	}
	return out
}

// systemBUID serialises reads: the first one creates
// SystemConfiguration.plist, and two concurrent creators would hand out
// different BUIDs.
func (s *Server) systemBUID() (string, error) {
	s.buidMu.Lock()
	defer s.buidMu.Unlock()
	return s.records.SystemBUID()
}

// readPairRecord answers {PairRecordData} with the stored file's bytes, or
// an errno Result: 22 without a usable PairRecordID, 2 when there is none.
func (s *Server) readPairRecord(c *client, tag uint32, req *Request) error {
	if pairrecord.CheckUDID(req.PairRecordID) != nil {
		return s.writeResult(c, tag, ResultEINVAL)
	}
	b, err := s.records.LoadRaw(req.PairRecordID)
	switch {
	case errors.Is(err, pairrecord.ErrNotFound):
		return s.writeResult(c, tag, ResultENOENT)
	case err != nil:
		s.log.Warn("usbmuxd: reading pair record", "udid", req.PairRecordID, "err", err)
		return s.writeResult(c, tag, ResultEIO)
	case len(b) == 0:
		// An empty PairRecordData would crash libimobiledevice (§1.7).
		return s.writeResult(c, tag, ResultENOENT)
	}
	return s.writePlist(c, tag, &PairRecordReply{PairRecordData: b})
}

// savePairRecord stores PairRecordData (binary or XML, re-encoded as XML)
// and tells listeners Paired when DeviceID names the device the record is
// for (§3.4).
func (s *Server) savePairRecord(c *client, tag uint32, req *Request) error {
	var probe map[string]any
	if pairrecord.CheckUDID(req.PairRecordID) != nil || len(req.PairRecordData) < 8 ||
		plistconn.Unmarshal(req.PairRecordData, &probe) != nil {
		return s.writeResult(c, tag, ResultEINVAL)
	}
	if err := s.records.SaveRaw(req.PairRecordID, req.PairRecordData); err != nil {
		s.log.Warn("usbmuxd: saving pair record", "udid", req.PairRecordID, "err", err)
		return s.writeResult(c, tag, ResultEIO)
	}
	if req.DeviceID > 0 {
		s.mu.Lock()
		if d, ok := s.devices[req.DeviceID]; ok && d.UDID == req.PairRecordID {
			s.notifyLocked(Event{Kind: Paired, Device: d})
		}
		s.mu.Unlock()
	}
	return s.writeResult(c, tag, ResultOK)
}

// deletePairRecord removes <UDID>.plist: Result 0, 2 when there was none,
// 22 for a bad PairRecordID.
func (s *Server) deletePairRecord(c *client, tag uint32, req *Request) error {
	if pairrecord.CheckUDID(req.PairRecordID) != nil {
		return s.writeResult(c, tag, ResultEINVAL)
	}
	err := s.records.Delete(req.PairRecordID)
	switch {
	case errors.Is(err, pairrecord.ErrNotFound):
		return s.writeResult(c, tag, ResultENOENT)
	case err != nil:
		s.log.Warn("usbmuxd: deleting pair record", "udid", req.PairRecordID, "err", err)
		return s.writeResult(c, tag, ResultEIO)
	}
	return s.writeResult(c, tag, ResultOK)
}

// connect dials the device and, on success, answers Result 0 and hands the
// socket over to the raw stream. A failed dial answers BADDEV or
// CONNREFUSED and leaves the socket in command state (corrections.md M-b4).
func (s *Server) connect(ctx context.Context, c *client, tag uint32, id uint32, port uint16) (next, error) {
	s.mu.Lock()
	_, known := s.devices[id]
	s.mu.Unlock()
	if !known {
		return next{}, s.writeResult(c, tag, ResultBadDevice)
	}
	// usbmuxd would send a SYN to port 0 and get a reset; skip the dial.
	if port == 0 {
		return next{}, s.writeResult(c, tag, ResultConnRefused)
	}
	dctx, cancel := context.WithTimeout(ctx, s.opts.DialTimeout)
	defer cancel()
	// While the dial runs, any byte or EOF from the client ends it: usbmuxd
	// drops the client and resets the half-open connection (A3). A client
	// that gives up (libusbmuxd: after 5 s) cancels the dial this way.
	watch := s.watchClient(c, cancel)
	dev, err := s.src.Dial(dctx, id, port)
	if dev == nil && err == nil {
		err = errors.New("usbmuxd: source returned no connection")
	}
	if werr := watch(); werr != nil {
		if dev != nil {
			dev.Close()
		}
		return next{}, werr
	}
	// Only an unknown device is BADDEV; any other dial failure (a reset,
	// the link dying, the dial timeout) is what usbmuxd reports for a
	// refused SYN: CONNREFUSED.
	if err != nil {
		code := ResultConnRefused
		if errors.Is(err, ErrNoDevice) {
			code = ResultBadDevice
		}
		s.log.Debug("usbmuxd: connect failed", "client", c.id, "device", id, "port", port, "err", err)
		return next{}, s.writeResult(c, tag, code)
	}
	// Result 0 goes out only once the device accepted, and nothing else is
	// framed on this socket afterwards (§3.6).
	if err := s.writeResult(c, tag, ResultOK); err != nil {
		dev.Close()
		return next{}, err
	}
	return next{mode: modeConnected, dev: dev}, nil
}

// watchClient reads from the client in the background until the returned
// stop function is called; stop reports whether the client sent data or
// went away meanwhile. Connections without read deadlines are not watched.
func (s *Server) watchClient(c *client, abort context.CancelFunc) (stop func() error) {
	if c.conn.SetReadDeadline(time.Time{}) != nil {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		var b [1]byte
		n, err := c.conn.Read(b[:])
		if n > 0 {
			err = errEarlyData
		}
		if !isTimeout(err) {
			abort()
		}
		done <- err
	}()
	return func() error {
		_ = c.conn.SetReadDeadline(time.Unix(1, 0))
		err := <-done
		_ = c.conn.SetReadDeadline(time.Time{})
		if isTimeout(err) {
			return nil
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("usbmuxd: client closed during Connect: %w", err)
		}
		return err
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// splice copies between the client and the device until either side ends,
// then closes both (the mux has no half-close, §2.5, §3.6).
func (s *Server) splice(c *client, dev net.Conn) error {
	// The stream has no timeouts of its own: lockdown sessions and backups
	// idle for long stretches. io.Copy forwards each read as one write, so
	// small headers the device wrote in one piece stay in one piece (M-b3).
	_ = c.conn.SetDeadline(time.Time{})
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn, size int) {
		// An explicit buffer: a TCP socket's ReadFrom/WriteTo, and io.Copy
		// itself, copy through a 32 KiB one, a system call per 32 KiB.
		_, _ = io.CopyBuffer(writerOnly{dst}, readerOnly{src}, make([]byte, size))
		done <- struct{}{}
	}
	go cp(dev, c.conn, spliceToDevice)
	go cp(c.conn, dev, spliceToClient)
	<-done
	c.conn.Close()
	dev.Close()
	<-done
	return nil
}

// Relay buffer sizes: a backup streams device → client, where one read may
// return everything the mux connection holds (its 256 KiB receive buffer).
const (
	spliceToClient = 256 << 10
	spliceToDevice = 64 << 10
)

// writerOnly hides every method of a writer but Write.
type writerOnly struct{ io.Writer }

// readerOnly hides every method of a reader but Read.
type readerOnly struct{ io.Reader }

// startListen makes c a listener: it queues Attached for every visible
// device and sends Result 0 before them.
func (s *Server) startListen(c *client, tag uint32) error {
	s.mu.Lock()
	c.listening = true
	c.signal = make(chan struct{}, 1)
	for _, d := range s.sortedDevices() {
		c.pushLocked(Event{Kind: Attached, Device: d}, s.opts.MaxQueuedEvents)
	}
	s.mu.Unlock()
	return s.writeResult(c, tag, ResultOK)
}

// serveListen writes notifications until the client closes the socket or
// sends anything (a listening socket takes no more commands, A2).
func (s *Server) serveListen(ctx context.Context, c *client) error {
	readDone := make(chan error, 1)
	go func() {
		_, err := c.fr.ReadFrame()
		if err == nil {
			err = errCommandWhileListening
		}
		readDone <- err
	}()
	defer func() {
		c.conn.Close()
		<-readDone
	}()
	// The queue is filled by apply/notifyLocked under s.mu; this goroutine
	// takes it whole and writes outside the lock, so a slow client never
	// holds up device events for others.
	for {
		s.mu.Lock()
		queue, overflow := c.queue, c.overflow
		c.queue = nil
		s.mu.Unlock()
		for _, ev := range queue {
			if err := s.writeEvent(c, ev); err != nil {
				return err
			}
		}
		if overflow {
			return errSlowListener
		}
		select {
		case <-c.signal:
		case err := <-readDone:
			readDone <- err // for the deferred wait
			if errors.Is(err, errCommandWhileListening) {
				return err
			}
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// writeEvent sends a notification (tag 0) in the client's protocol.
func (s *Server) writeEvent(c *client, ev Event) error {
	if c.proto == ProtoPlist {
		var v any
		switch ev.Kind {
		case Attached:
			m := ev.Device.attached()
			v = &m
		case Detached:
			v = &DeviceIDMessage{MessageType: MsgDetached, DeviceID: uint64(ev.Device.ID)}
		case Paired:
			v = &DeviceIDMessage{MessageType: MsgPaired, DeviceID: uint64(ev.Device.ID)}
		default:
			return nil
		}
		return s.writePlist(c, 0, v)
	}
	// Binary notifications: DEVICE_ADD carries the 268-byte record (no
	// speed or connection type in this protocol, §3.3).
	fr := &Frame{Version: ProtoBinary}
	switch ev.Kind {
	case Attached:
		d := ev.Device
		fr.Type = TypeDeviceAdd
		fr.Payload = DeviceRecord{DeviceID: d.ID, ProductID: d.ProductID, SerialNumber: d.UDID, Location: d.LocationID}.Append(nil)
	case Detached:
		fr.Type, fr.Payload = TypeDeviceRemove, AppendDeviceID(nil, ev.Device.ID)
	case Paired:
		fr.Type, fr.Payload = TypeDevicePaired, AppendDeviceID(nil, ev.Device.ID)
	default:
		return nil
	}
	return s.writeFrame(c, fr)
}
