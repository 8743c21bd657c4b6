#!/usr/bin/python3
"""An emulated USB bus for fake phones (umockdev usbdevfs handler).

usage: umockdev-wrapper /usr/bin/python3 usbbus.py --socket PATH [--no-fifo]
           [--stats FILE] [-v] -- CMD [ARGS...]

Creates a umockdev testbed, listens on the UNIX stream socket PATH and runs
CMD inside the testbed with USBEMU_BUS=PATH in its environment. Every
connection to PATH is one phone plugged into a port of bus 1: the phone (Go,
package fakedevice/usbemu) first sends a HELLO frame with its descriptors and
strings; the bus then adds the device to the testbed (sysfs, /dev/bus/usb
node, udev "add" uevent) and answers every usbdevfs ioctl a libusb host makes
on the node. Bulk transfers on the mux interface travel over the connection,
one frame per transfer (bus protocol: fakedevice/usbemu/bus.go). When the
phone closes the connection the device is unplugged: first the URBs fail
with EPROTO (a pulled cable), then the kernel's disconnect ("remove" uevent,
ENODEV for every ioctl); see Phone.unplug.

USB facts: usb-usbmux-lockdown.md section 1 and corrections.md M-a. The
usbdevfs emulation itself is in usbdevfs.py; this file is the bus: plugging
and unplugging phones and carrying their transfers.

Readiness: umockdev makes the node a regular file, which poll() always
reports ready, and libusb hosts then spin on REAPURBNDELAY. Unless --no-fifo
is given, the node is a FIFO instead, kept full (no POLLOUT) while nothing
can be reaped and with one page read from it (POLLOUT) while something can
(the workaround of the usb-emulation study). The FIFO is created before the
device is added, and the record then has no N: line, so umockdev leaves it
alone: unlike the study's swap after the "add" uevent, no host can open the
regular file first (that race left usbmuxd busy-polling and deaf to SIGINT).
"""
import argparse
import errno
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import usbdevfs  # noqa: E402
from usbdevfs import Stall, UsbdevfsDevice, log  # noqa: E402

import gi  # noqa: E402

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

PULL_GRACE = 0.1  # seconds between a pulled cable and the kernel's disconnect

# ---- bus protocol (bus.go) --------------------------------------------------
F_HELLO, F_IN, F_OUT, F_EVENT = 1, 2, 3, 4
MAX_FRAME = 1 << 20

def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def read_frame(sock):
    """Returns (type, payload) or None at EOF / on a malformed frame."""
    hdr = read_exact(sock, 4)
    if hdr is None:
        return None
    n = struct.unpack(">I", hdr)[0]
    if n == 0 or n > MAX_FRAME:
        log("bad frame length", n)
        return None
    body = read_exact(sock, n)
    if body is None:
        return None
    return body[0], body[1:]


class Phone(UsbdevfsDevice):
    """One phone plugged into the bus: sysfs device, /dev node, usbdevfs,
    and the connection to the Go side that carries its mux transfers."""

    def __init__(self, bus, sock, hello, devnum):
        super().__init__(bus.tb, bytes.fromhex(hello["descriptors"]),
                         {int(k): v for k, v in hello["strings"].items()},
                         hello["mux_out"], hello["mux_in"], hello["max_packet"],
                         hello["initial_config"], 1, devnum)
        self.bus, self.sock = bus, sock
        self.mode = bytes.fromhex(hello["mode"])
        self.serial = self.strings.get(self.desc[16], "")
        self.send_lock = threading.Lock()
        self.unplugged = threading.Event()  # set once the testbed no longer has it
        self.events = []

    def bulk_out(self, data):
        self.send(F_OUT, data)

    def vendor_control(self, rt, req, value, index, length):
        if rt == 0xC0 and req == 0x45:  # Apple GET_MODE (section 1.3)
            self.event("get_mode")
            return self.mode[:length]
        if rt == 0xC0 and req == 0x52:  # Apple SET_MODE: accepted, 0x00
            self.event("set_mode", index)
            return b"\x00"[:length]
        raise Stall()

    # ---- plug / unplug ------------------------------------------------------
    def umockdev_record(self, node_contents):
        """The device in umockdev's text record format (P/N/E/A/H lines);
        the N: line (node as a regular file with the descriptors) only with
        node_contents."""
        d = self.desc
        vid, pid, bcd = struct.unpack_from("<HHH", d, 8)
        minor = (self.busnum - 1) * 128 + self.devnum - 1
        props = [
            ("DEVNAME", self.devnode), ("DEVTYPE", "usb_device"), ("DRIVER", "usb"),
            ("PRODUCT", "%x/%x/%x" % (vid, pid, bcd)), ("TYPE", "0/0/0"),
            ("BUSNUM", "%03d" % self.busnum), ("DEVNUM", "%03d" % self.devnum),
            ("MAJOR", "189"), ("MINOR", str(minor)),
            ("ID_VENDOR_ID", "%04x" % vid), ("ID_MODEL_ID", "%04x" % pid),
            ("ID_SERIAL_SHORT", self.serial), ("SUBSYSTEM", "usb"),
        ]
        attrs = [
            ("idVendor", "%04x" % vid), ("idProduct", "%04x" % pid), ("bcdDevice", "%04x" % bcd),
            ("bDeviceClass", "%02x" % d[4]), ("bDeviceSubClass", "%02x" % d[5]),
            ("bDeviceProtocol", "%02x" % d[6]), ("bMaxPacketSize0", str(d[7])),
            ("bNumConfigurations", str(d[17])), ("bConfigurationValue", str(self.config)),
            ("bNumInterfaces", "%2d" % self.num_interfaces(self.config)),
            ("bmAttributes", "c0"), ("bMaxPower", "500mA"),
            ("busnum", str(self.busnum)), ("devnum", str(self.devnum)),
            ("devpath", str(self.devnum - 1)), ("speed", "480"), ("version", " 2.00"),
            ("maxchild", "0"), ("dev", "189:%d" % minor),
            ("manufacturer", self.strings.get(d[14], "") + "\\n"),
            ("product", self.strings.get(d[15], "") + "\\n"),
            ("serial", self.serial + "\\n"),
        ]
        lines = ["P: " + self.syspath[len("/sys"):]]
        if node_contents:
            lines.append("N: %s=%s" % (self.devnode[len("/dev/"):], d.hex().upper()))
        lines += ["E: %s=%s" % kv for kv in props]
        # sysfs text attributes end in a newline (libusb warns otherwise).
        lines += ["A: %s=%s" % (k, v if v.endswith("\\n") else v + "\\n") for k, v in attrs]
        lines.append("H: descriptors=" + d.hex().upper())
        return "\n".join(lines) + "\n"

    def plug(self, use_fifo):
        self.tb.attach_ioctl(self.devnode, self.handler)
        if use_fifo:
            self.make_fifo()
        # Sends the "add" uevent. With a FIFO the record has no N: line, so
        # umockdev leaves the FIFO in place: a host can never open a
        # regular-file node (the study's hot-plug race).
        self.tb.add_from_string(self.umockdev_record(node_contents=not use_fifo))
        log("plugged", self.serial, "at", self.devnode)

    def unplug(self, grace=PULL_GRACE):
        """Pulls the cable, in the two steps a real disconnect has.

        First the wire is dead but the kernel has not noticed: every URB in
        flight and every URB submitted in the next `grace` seconds fails
        with EPROTO (libusb: LIBUSB_TRANSFER_ERROR). Then the hub reports
        the disconnect: the "remove" uevent, and ENODEV for every ioctl
        once the failed URBs are reaped. Without the first step, a host
        that resubmits a just-completed transfer gets ENODEV from the
        submit, which usbmuxd 1.1.1 ignores (usb.c rx_callback) and then
        waits forever for that transfer in usb_disconnect.
        """
        with self.lock:
            if self.pulled:
                return
            self.pulled = True
            for q in self.in_pending.values():
                while q:
                    self.finish(q.popleft(), -errno.EPROTO, 0)
        time.sleep(grace)
        with self.lock:
            for q in self.in_pending.values():
                while q:
                    self.finish(q.popleft(), -errno.ESHUTDOWN, 0)
            self.gone = True
            # A FIFO stays ready from now on so hosts reap the failures
            # and then see ENODEV.
            self.set_ready(True)
        try:
            self.tb.uevent(self.syspath, "remove")
            self.tb.remove_device(self.syspath)
        except Exception as e:
            log("unplug:", e)
        self.unplugged.set()
        log("unplugged", self.serial, dict(self.stats))

    # ---- connection to the phone -------------------------------------------
    def send(self, typ, payload=b""):
        frame = struct.pack(">IB", len(payload) + 1, typ) + payload
        try:
            with self.send_lock:
                self.sock.sendall(frame)
        except OSError as e:
            log("send to phone failed:", e)

    def event(self, kind, value=0):
        """Queues an event for the phone; flush_events sends it. Events are
        raised with the lock held, and the socket is never written under it
        (the reader thread needs the lock to make progress)."""
        self.events.append(json.dumps({"kind": kind, "value": value}).encode())

    def flush_events(self):
        with self.lock:
            evs, self.events = self.events, []
        for e in evs:
            self.send(F_EVENT, e)

    def reader(self):
        """Reads IN frames from the phone until it disconnects, then unplugs."""
        while True:
            f = read_frame(self.sock)
            if f is None:
                break
            typ, payload = f
            if typ == F_IN:
                self.queue_in(payload)
        self.unplug()
        try:
            self.sock.close()
        except OSError:
            pass


class Bus:
    """Bus 1: accepts phone connections on a UNIX socket and plugs them in."""

    def __init__(self, tb, path, use_fifo):
        self.tb, self.path, self.use_fifo = tb, path, use_fifo
        self.next_devnum = 2  # 1 would be the root hub
        self.phones = []
        self.lock = threading.Lock()
        if os.path.exists(path):
            os.remove(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def serve(self, sock):
        f = read_frame(sock)
        if f is None or f[0] != F_HELLO:
            log("connection without HELLO; closed")
            sock.close()
            return
        try:
            hello = json.loads(f[1])
        except ValueError as e:
            log("bad HELLO:", e)
            sock.close()
            return
        with self.lock:
            devnum = self.next_devnum
            self.next_devnum += 1
            phone = Phone(self, sock, hello, devnum)
            self.phones.append(phone)
            phone.plug(self.use_fifo)
        phone.reader()

    def close(self):
        self.listener.close()
        with self.lock:
            phones = list(self.phones)
        for p in phones:
            p.unplug()
            p.unplugged.wait(5)
            try:
                p.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", required=True, help="UNIX socket phones connect to")
    ap.add_argument("--no-fifo", action="store_true", help="leave the node a regular file (hosts busy-poll)")
    ap.add_argument("--stats", help="write per-phone counters as JSON to this file at exit")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    usbdevfs.VERBOSE = a.verbose
    cmd = a.cmd[1:] if a.cmd[:1] == ["--"] else a.cmd
    if not cmd:
        ap.error("no command")
    if "libumockdev-preload" not in os.environ.get("LD_PRELOAD", ""):
        sys.exit("usbbus.py: run me under umockdev-wrapper")
    tb = UMockdev.Testbed.new()
    bus = Bus(tb, os.path.abspath(a.socket), not a.no_fifo)
    # Testbed.new() sets UMOCKDEV_DIR in the C environment only; os.environ
    # is Python's copy from start-up, so pass it on explicitly.
    env = dict(os.environ, USBEMU_BUS=os.path.abspath(a.socket), UMOCKDEV_DIR=tb.get_root_dir())
    try:
        p = subprocess.Popen(cmd, env=env)
    except OSError as e:
        print("usbbus.py: cannot run %s: %s" % (cmd[0], e), file=sys.stderr)
        bus.close()
        shutil.rmtree(tb.get_root_dir(), ignore_errors=True)
        os._exit(127)
    try:
        rc = p.wait()
    except KeyboardInterrupt:
        p.send_signal(signal.SIGINT)
        rc = p.wait()
    bus.close()  # unplugs every phone before the testbed directory goes
    if a.stats:
        with open(a.stats, "w") as f:
            json.dump([dict(serial=ph.serial, devnum=ph.devnum, **ph.stats) for ph in bus.phones], f)
    for ph in bus.phones:
        log("phone", ph.serial, "devnum", ph.devnum, dict(ph.stats))
    shutil.rmtree(tb.get_root_dir(), ignore_errors=True)
    try:
        os.remove(a.socket)
    except OSError:
        pass
    sys.stderr.flush()
    os._exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()
