"""usbdevfs emulation of one USB device for umockdev (0.17).

UsbdevfsDevice answers the usbdevfs ioctls a libusb host makes on an
emulated /dev/bus/usb node (SUBMITURB, REAPURB[NDELAY], DISCARDURB,
CLAIM/RELEASEINTERFACE, SETCONFIGURATION, CONTROL, GET_CAPABILITIES,
GET_SPEED, CONNECTINFO, GETDRIVER, IOCTL) through UMockdev.IoctlBase's
handle-ioctl signal. The ABI is linux/usbdevice_fs.h; the structure
layouts are those of 64-bit Linux (LP64), checked at import.

A subclass supplies the device: descriptors and strings, what happens to
bulk OUT data on the mux endpoint (bulk_out), vendor control requests
(vendor_control) and events (event/flush_events). IN data is queued with
queue_in(). USB transfer semantics (usb-usbmux-lockdown.md section 1.5,
corrections.md M-a.4) are kept where a host can see them: see match_in.

umockdev runs the handler in its own worker thread, one ioctl at a time;
other threads only queue IN data. self.lock guards the URB queues; the
socket to the phone is never written with it held.
"""
import collections
import ctypes
import errno
import os
import struct
import sys
import threading

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

if ctypes.sizeof(ctypes.c_void_p) != 8:
    sys.exit("usbdevfs.py: only 64-bit Linux usbdevfs layouts are implemented")

VERBOSE = False


def log(*a):
    if VERBOSE:
        print("[usbbus]", *a, file=sys.stderr, flush=True)


# ---- usbdevfs ioctl numbers (_IOC encoding of asm-generic/ioctl.h) --------
def _ioc(direction, nr, size):
    return (direction << 30) | (size << 16) | (ord("U") << 8) | nr


_NONE, _W, _R = 0, 1, 2
URB_SIZE = 56      # struct usbdevfs_urb without iso frame descriptors
CTRL_SIZE = 24     # struct usbdevfs_ctrltransfer
CONTROL = _ioc(_R | _W, 0, CTRL_SIZE)
SETINTERFACE = _ioc(_R, 4, 8)
SETCONFIGURATION = _ioc(_R, 5, 4)
GETDRIVER = _ioc(_W, 8, 260)
SUBMITURB = _ioc(_R, 10, URB_SIZE)
DISCARDURB = _ioc(_NONE, 11, 0)
REAPURB = _ioc(_W, 12, 8)
REAPURBNDELAY = _ioc(_W, 13, 8)
CLAIMINTERFACE = _ioc(_R, 15, 4)
RELEASEINTERFACE = _ioc(_R, 16, 4)
CONNECTINFO = _ioc(_W, 17, 8)
IOCTL = _ioc(_R | _W, 18, 16)
RESET = _ioc(_NONE, 20, 0)
CLEAR_HALT = _ioc(_R, 21, 4)
GET_CAPABILITIES = _ioc(_R, 26, 4)
DISCONNECT_CLAIM = _ioc(_R, 27, 264)
GET_SPEED = _ioc(_NONE, 31, 0)
SUB_DISCONNECT = _ioc(_NONE, 22, 0)  # ioctl_code inside USBDEVFS_IOCTL
SUB_CONNECT = _ioc(_NONE, 23, 0)
NAMES = {v: k for k, v in dict(globals()).items() if isinstance(v, int) and k.isupper() and v > 0xFFFF}

URB_CONTROL, URB_BULK = 2, 3
URB_ZERO_PACKET = 0x40
# ZERO_PACKET | BULK_CONTINUATION | NO_PACKET_SIZE_LIM | BULK_SCATTER_GATHER | REAP_AFTER_DISCONNECT
CAPABILITIES = 0x01 | 0x02 | 0x04 | 0x08 | 0x10
SPEED_HIGH = 3


class Stall(Exception):
    """A control request the device STALLs (-EPIPE)."""


class Urb:
    __slots__ = ("client", "addr", "data", "buf", "type", "ep", "length", "flags")

    def __init__(self, client, addr, data, buf, typ, ep, length, flags):
        self.client, self.addr, self.data, self.buf = client, addr, data, buf
        self.type, self.ep, self.length, self.flags = typ, ep, length, flags


class InTransfer:
    """One device->host transfer: its bytes, how many were delivered, and
    whether its trailing ZLP still has to complete a URB."""
    __slots__ = ("data", "pos")

    def __init__(self, data):
        self.data, self.pos = data, 0


def string_descriptor(text):
    b = text.encode("utf-16-le")
    return struct.pack("<BB", 2 + len(b), 3) + b


class UsbdevfsDevice:
    """The usbdevfs side of one emulated device (see the module doc)."""

    def __init__(self, tb, desc, strings, mux_out, mux_in, mps, config, busnum, devnum):
        self.tb = tb
        self.desc = desc          # device descriptor + all configuration descriptors
        self.strings = strings    # index -> text
        self.mux_out, self.mux_in, self.mps = mux_out, mux_in, mps
        self.config = config
        self.busnum, self.devnum = busnum, devnum
        self.sysname = "%d-%d" % (busnum, devnum - 1)
        self.syspath = "/sys/devices/pci0000:00/0000:00:14.0/usb%d/%s" % (busnum, self.sysname)
        self.devnode = "/dev/bus/usb/%03d/%03d" % (busnum, devnum)
        self.lock = threading.Lock()
        self.in_pending = collections.defaultdict(collections.deque)  # ep -> URBs
        self.in_queue = collections.deque()                            # InTransfers (mux IN)
        self.reapable = collections.defaultdict(collections.deque)    # client -> URBs
        self.n_reapable = 0
        self.read_pos = {}
        self.claimed = {}     # interface -> client that claimed it
        self.pulled = False   # cable pulled (URBs fail with EPROTO)
        self.gone = False     # disconnect seen by the kernel (ENODEV)
        self.fifo_fd = None
        self.fifo_ready = False
        self.stats = collections.Counter()
        self.handler = UMockdev.IoctlBase()
        self.handler.connect("handle-ioctl", self.on_ioctl)
        self.handler.connect("handle-read", self.on_read)
        self.handler.connect("client-vanished", self.on_vanished)
        self.handler.connect("client-connected", self.on_connected)

    # ---- hooks for the subclass ------------------------------------------------
    def bulk_out(self, data):
        """One OUT URB's data on the mux endpoint (b"" for a ZLP)."""

    def vendor_control(self, rt, req, value, index, length):
        """A vendor control request: return the IN data, or raise Stall."""
        raise Stall()

    def event(self, kind, value=0):
        """Something the host did (configuration, claim, reset, ...)."""

    def flush_events(self):
        """Called after each ioctl, without the lock held."""

    def queue_in(self, data):
        """Queues one device->host transfer on the mux IN endpoint."""
        with self.lock:
            if self.pulled:
                return
            self.in_queue.append(InTransfer(data))
            self.match_in()

    # ---- URB completion ------------------------------------------------------
    def finish(self, urb, status, actual, payload=None):
        """Completes urb (lock held); it becomes reapable by its client."""
        if payload:
            urb.buf.update(8 if urb.type == URB_CONTROL else 0, payload)
        urb.data.update(4, struct.pack("<i", status))
        urb.data.update(28, struct.pack("<i", actual))
        self.reapable[urb.client].append(urb)
        self.n_reapable += 1
        self.set_ready(True)

    def match_in(self):
        """Gives queued IN data to pending mux IN URBs (lock held).

        USB semantics: a transfer of N bytes goes out as packets of
        max_packet bytes; a short last packet ends it, and when N is a
        multiple of max_packet a ZLP ends it. A URB completes when it is
        full or when the transfer's end arrives, so one URB never holds
        bytes of two transfers, and a transfer that exactly fills a URB
        leaves its ZLP to complete the next URB with 0 bytes.
        """
        q = self.in_pending[self.mux_in]
        while q and self.in_queue:
            urb, t = q.popleft(), self.in_queue[0]
            left = len(t.data) - t.pos
            take = min(left, urb.length)
            chunk = t.data[t.pos:t.pos + take]
            t.pos += take
            if t.pos == len(t.data):
                ends_short = len(t.data) % self.mps != 0
                if ends_short or take < urb.length or left == 0:
                    self.in_queue.popleft()  # short packet or ZLP consumed here
            self.finish(urb, 0, take, chunk)
            self.stats["in_transfers" if take else "in_zlps"] += 1
            self.stats["in_bytes"] += take

    # ---- poll() readiness through a FIFO -----------------------------------
    def make_fifo(self):
        """Creates the node as a FIFO that poll() reports writable exactly
        while something can be reaped (set_ready)."""
        node = self.tb.get_root_dir() + self.devnode
        os.makedirs(os.path.dirname(node), exist_ok=True)
        os.mkfifo(node, 0o666)
        self.fifo_fd = os.open(node, os.O_RDWR | os.O_NONBLOCK)
        self.fifo_ready = True
        with self.lock:
            self.set_ready(False)

    def set_ready(self, want):
        """Keeps the FIFO writable exactly while something can be reaped."""
        if self.fifo_fd is None or self.gone and not want:
            return
        if want and not self.fifo_ready:
            os.read(self.fifo_fd, 4096)
            self.fifo_ready = True
        elif not want and self.fifo_ready:
            try:
                while True:
                    os.write(self.fifo_fd, b"\0" * 4096)
            except BlockingIOError:
                pass
            self.fifo_ready = False

    # ---- ioctls ----------------------------------------------------------------
    def on_ioctl(self, handler, client):
        req = client.get_request()
        try:
            if self.gone and not (req in (REAPURB, REAPURBNDELAY) and self.reapable.get(client)):
                client.complete(-1, errno.ENODEV)
            elif req in (REAPURB, REAPURBNDELAY):
                self.reap(client)
            elif req == SUBMITURB:
                self.submit(client)
            elif req == DISCARDURB:
                self.discard(client)
            else:
                self.misc(client, req)
        except Exception:  # never leave the host hanging in its ioctl
            import traceback
            traceback.print_exc()
            client.complete(-1, errno.EIO)
        if self.events:
            self.flush_events()
        return True

    def submit(self, client):
        arg = client.get_arg()
        addr = struct.unpack("<Q", bytes(arg.retrieve())[:8])[0]
        data = arg.resolve(0, URB_SIZE)
        raw = bytes(data.retrieve())
        typ, ep = raw[0], raw[1]
        flags = struct.unpack_from("<I", raw, 8)[0]
        length = struct.unpack_from("<i", raw, 24)[0]
        buf = data.resolve(16, length) if length > 0 else None
        urb = Urb(client, addr, data, buf, typ, ep, length, flags)
        if typ not in (URB_CONTROL, URB_BULK):
            client.complete(-1, errno.EINVAL)
            return
        payload = bytes(buf.retrieve()) if buf is not None else b""
        out = None  # bulk OUT data for the mux endpoint, sent after the lock
        # One lock section decides the URB's fate, so that an unplug running
        # in another thread either sees it queued or it sees the unplug:
        # no URB can slip in after the unplug failed the queued ones.
        with self.lock:
            self.stats["submits"] += 1
            if self.gone:
                client.complete(-1, errno.ENODEV)
                return
            if self.pulled:  # dead wire: the URB fails, nothing is sent
                self.finish(urb, -errno.EPROTO, 0)
            elif typ == URB_CONTROL:
                setup, body = payload[:8], payload[8:]
                try:
                    reply = self.control(setup, body)
                    self.finish(urb, 0, len(reply) if setup[0] & 0x80 else len(body), reply)
                except Stall:
                    self.finish(urb, -errno.EPIPE, 0)
            elif ep & 0x80:
                self.in_pending[ep].append(urb)
                if ep == self.mux_in:
                    self.match_in()
            else:
                if ep == self.mux_out:
                    out = payload
                    self.stats["out_transfers" if out else "out_zlps"] += 1
                    self.stats["out_bytes"] += len(out)
                self.finish(urb, 0, len(payload))
        if out is not None:
            self.bulk_out(out)
            if flags & URB_ZERO_PACKET and out and len(out) % self.mps == 0:
                self.bulk_out(b"")
        client.complete(0, 0)

    def reap(self, client):
        with self.lock:
            self.stats["reaps"] += 1
            q = self.reapable.get(client)
            urb = q.popleft() if q else None
            if urb is not None:
                self.n_reapable -= 1
                self.set_ready(self.n_reapable > 0)
        if urb is None:
            self.stats["reaps_empty"] += 1
            client.complete(-1, errno.EAGAIN)
            return
        ptr = client.get_arg().resolve(0, 8)
        ptr.set_ptr(0, urb.data)
        client.complete(0, 0)

    def discard(self, client):
        addr = struct.unpack("<Q", bytes(client.get_arg().retrieve())[:8])[0]
        with self.lock:
            for q in self.in_pending.values():
                for u in q:
                    if u.addr == addr and u.client is client:
                        q.remove(u)
                        self.finish(u, -errno.ENOENT, 0)
                        self.stats["discards"] += 1
                        client.complete(0, 0)
                        return
        client.complete(-1, errno.EINVAL)

    def u32_arg(self, client):
        return struct.unpack("<I", bytes(client.get_arg().resolve(0, 4).retrieve()))[0]

    def misc(self, client, req):
        log("ioctl", NAMES.get(req, hex(req)))
        if req == GET_CAPABILITIES:
            client.get_arg().resolve(0, 4).update(0, struct.pack("<I", CAPABILITIES))
            client.complete(0, 0)
        elif req == GET_SPEED:
            client.complete(SPEED_HIGH, 0)
        elif req == CONNECTINFO:
            client.get_arg().resolve(0, 8).update(0, struct.pack("<IB", self.devnum, 0))
            client.complete(0, 0)
        elif req == CLAIMINTERFACE:
            # usbfs claims are exclusive: a second host gets EBUSY, as when
            # usbmuxd already holds the phone.
            iface = self.u32_arg(client)
            owner = self.claimed.get(iface)
            if owner is not None and owner is not client:
                client.complete(-1, errno.EBUSY)
                return
            self.claimed[iface] = client
            self.event("claim_interface", iface)
            client.complete(0, 0)
        elif req == RELEASEINTERFACE:
            iface = self.u32_arg(client)
            if self.claimed.get(iface) is not client:
                client.complete(-1, errno.EINVAL)
                return
            del self.claimed[iface]
            self.event("release_interface", iface)
            client.complete(0, 0)
        elif req == SETCONFIGURATION:
            value = self.u32_arg(client)
            with self.lock:
                self.set_configuration(value)
            client.complete(0, 0)
        elif req == RESET:
            self.event("reset")
            client.complete(0, 0)
        elif req in (SETINTERFACE, CLEAR_HALT):
            client.complete(0, 0)
        elif req == GETDRIVER:
            client.complete(-1, errno.ENODATA)  # no kernel driver bound
        elif req == IOCTL:
            # struct usbdevfs_ioctl {int ifno; int ioctl_code; void *data}:
            # DISCONNECT (detach the kernel driver) finds no driver, as on a
            # machine where ipheth and friends are not bound; CONNECT is a no-op.
            code = struct.unpack_from("<i", bytes(client.get_arg().resolve(0, 16).retrieve()), 4)[0]
            if code == SUB_DISCONNECT:
                client.complete(-1, errno.ENODATA)
            elif code == SUB_CONNECT:
                client.complete(0, 0)
            else:
                client.complete(-1, errno.ENOTTY)
        elif req == CONTROL:
            self.sync_control(client)
        else:
            client.complete(-1, errno.ENOTTY)

    def sync_control(self, client):
        d = client.get_arg().resolve(0, CTRL_SIZE)
        raw = bytes(d.retrieve())
        setup = raw[:8]
        wlength = struct.unpack_from("<H", raw, 6)[0]
        buf = d.resolve(16, wlength) if wlength else None
        out = bytes(buf.retrieve()) if buf is not None and not setup[0] & 0x80 else b""
        try:
            with self.lock:
                reply = self.control(setup, out)
        except Stall:
            client.complete(-1, errno.EPIPE)
            return
        if setup[0] & 0x80:
            if reply:
                buf.update(0, reply)
            client.complete(len(reply), 0)
        else:
            client.complete(len(out), 0)

    # ---- the device's control endpoint (lock held) ----------------------------
    def control(self, setup, out):
        rt, req, value, index, length = struct.unpack("<BBHHH", setup)
        log("control %02x %02x %04x %04x %d" % (rt, req, value, index, length))
        self.stats["controls"] += 1
        if rt == 0x80 and req == 6:  # GET_DESCRIPTOR
            kind, idx = value >> 8, value & 0xFF
            if kind == 1:
                return self.desc[:18][:length]
            if kind == 2:
                return self.config_descriptor(idx)[:length]
            if kind == 3:
                if idx == 0:
                    return struct.pack("<BBH", 4, 3, 0x0409)[:length]
                if idx in self.strings:
                    return string_descriptor(self.strings[idx])[:length]
            raise Stall()
        if rt == 0x80 and req == 0:  # GET_STATUS: self-powered
            return b"\x01\x00"[:length]
        if rt == 0x80 and req == 8:  # GET_CONFIGURATION
            return bytes([self.config])[:length]
        if rt == 0x00 and req == 9:  # SET_CONFIGURATION
            self.set_configuration(value)
            return b""
        if rt in (0x01, 0x02) and req in (1, 11):  # CLEAR_FEATURE, SET_INTERFACE
            return b""
        if rt & 0x60 == 0x40:
            return self.vendor_control(rt, req, value, index, length)
        raise Stall()

    def config_descriptor(self, idx):
        d = self.desc[18:]
        for _ in range(idx):
            d = d[struct.unpack_from("<H", d, 2)[0]:]
        if len(d) < 9:
            raise Stall()
        return d[:struct.unpack_from("<H", d, 2)[0]]

    def num_interfaces(self, value):
        d = self.desc[18:]
        while len(d) >= 9:
            total = struct.unpack_from("<H", d, 2)[0]
            if d[5] == value:
                return d[4]
            d = d[total:]
        return 0

    def set_configuration(self, value):
        self.config = value
        # libusb re-reads bConfigurationValue from sysfs afterwards.
        self.tb.set_attribute(self.syspath, "bConfigurationValue", "%d\n" % value)
        self.tb.set_attribute(self.syspath, "bNumInterfaces", "%2d\n" % self.num_interfaces(value))
        self.event("set_configuration", value)

    # ---- reads of the node and vanished clients ---------------------------------
    def on_read(self, handler, client):
        """read() on a usbfs node returns the descriptors, like the kernel's."""
        arg = client.get_arg()
        n = len(arg.retrieve())
        pos = self.read_pos.get(client, 0)
        chunk = self.desc[pos:pos + n]
        self.read_pos[client] = pos + len(chunk)
        if chunk:
            arg.update(0, chunk)
        client.complete(len(chunk), 0)
        return True

    def on_connected(self, handler, client):
        self.stats["opens"] += 1

    def on_vanished(self, handler, client):
        with self.lock:
            q = self.reapable.pop(client, None)
            if q:
                self.n_reapable -= len(q)
            for pq in self.in_pending.values():
                for u in [u for u in pq if u.client is client]:
                    pq.remove(u)
            self.read_pos.pop(client, None)
            self.set_ready(self.n_reapable > 0)
        for iface in [i for i, c in self.claimed.items() if c is client]:
            del self.claimed[iface]
