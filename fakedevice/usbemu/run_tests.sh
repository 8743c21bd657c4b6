#!/bin/bash
# The real USB path in CI (issue 12): our gousb host and Debian's usbmuxd and
# libimobiledevice tools against fake phones on an emulated USB bus (umockdev).
#
# Needs root (usbmuxd's socket is /var/run/usbmuxd, pair records go to
# /var/lib/lockdown) on Debian 12 with:
#   apt-get install -y umockdev gir1.2-umockdev-1.0 python3-gi libusb-1.0-0-dev \
#       usbmuxd libimobiledevice-utils usbutils
# plus Go and a C toolchain for cgo to build the gousb tests (apt-get install -y gcc pkg-config).
# No other usbmuxd may run. Every step is bounded with `timeout`.
#
# usage: fakedevice/usbemu/run_tests.sh [-v]     (-v: show every log)
# A hung ibackup gets SIGQUIT from its timeout, so its log ends in a
# goroutine dump; logs are kept when a check fails.
# Prints one line per check and, last, "N passed, N failed"; exits 1 on failure.
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
repo=$(cd "$here/../.." && pwd)
PY=/usr/bin/python3 # Debian's python3 has gi; another python3 on PATH may not
BUS="$here/usbbus.py"
verbose=0
[ "${1:-}" = "-v" ] && verbose=1

pass=0
fail=0
ok() { echo "ok   $1${2:+  ($2)}"; pass=$((pass + 1)); }
bad() { echo "FAIL $1${2:+  ($2)}"; fail=$((fail + 1)); }
finish() {
	echo "$pass passed, $fail failed"
	[ "$fail" -eq 0 ]
	exit $?
}

# ---- inner steps: run inside the emulated bus (see the bottom) ------------------
# They print "CHECK ok|fail NAME [detail]" and "METRIC name value" lines.
check() { # check NAME CONDITION-EXIT-STATUS [detail]
	if [ "$2" -eq 0 ]; then echo "CHECK ok $1 ${3:-}"; else echo "CHECK fail $1 ${3:-}"; fi
}
wait_for() { # wait_for SECONDS CMD... : poll until CMD succeeds
	local end=$((SECONDS + $1))
	shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $end ] && return 1
		sleep 0.1
	done
}
listed() { idevice_id -l 2>/dev/null | grep -qx "$1"; }
not_listed() { ! idevice_id -l 2>/dev/null | grep -qx "$1"; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
now() { date +%s.%N; }
mbps() { awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.2f", b / (t1 - t0) / 1e6 }'; } # bytes t0 t1
stop_usbmuxd() { # stop_usbmuxd PID: SIGINT must end it within 3 s (no busy loop)
	kill -INT "$1" 2>/dev/null
	local i
	for i in $(seq 30); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$1" 2>/dev/null; then
		check usbmuxd-exits-on-sigint 1 "still running 3 s after SIGINT"
		kill -KILL "$1"
	else
		check usbmuxd-exits-on-sigint 0
	fi
	wait "$1" 2>/dev/null
	rm -f /var/run/usbmuxd /var/run/usbmuxd.pid
}

inner_lsusb() { # descriptors as lsusb (libusb) sees them
	local w=$1
	"$w/usbemu-phone" -echo -udid 00008030-001A2B3C4D5E6F70 >"$w/lsusb-phone.log" 2>&1 &
	local p=$!
	wait_for 10 sh -c 'lsusb -d 05ac:12a8 | grep -q .'
	local out
	out=$(timeout -k 10 20 lsusb -d 05ac:12a8 2>&1)
	echo "$out" | grep -q 'ID 05ac:12a8 Apple, Inc. iPhone\|ID 05ac:12a8 Apple Inc. iPhone'
	check lsusb-lists-iphone $? "$out"
	out=$(timeout -k 10 20 lsusb -v -d 05ac:12a8 2>/dev/null)
	echo "$out" >"$w/lsusb-v.txt"
	echo "$out" | grep -q 'bNumConfigurations *4' &&
		echo "$out" | grep -q 'iSerial .* 00008030001A2B3C4D5E6F70' &&
		[ "$(echo "$out" | grep -c 'bInterfaceSubClass *254')" -eq 2 ] &&
		[ "$(echo "$out" | grep -c 'wMaxPacketSize *0x0200')" -ge 4 ]
	check lsusb-v-descriptors $? "4 configurations, mux interface 255/254/2 in 3 and 4, serial = UDID without hyphen"
	kill -TERM $p
	wait $p
}

inner_tools() { # Debian's usbmuxd + libimobiledevice tools, and our host, on a full fake phone
	local w=$1 udid out rc t0 t1 p m c0 c1
	"$w/usbemu-phone" -new "$w/phones" -profile ios14 -seed 7 -files 120 -size 12000000 >"$w/phone.log" 2>"$w/phone.err" &
	p=$!
	wait_for 20 sh -c "[ -s '$w/phone.log' ]"
	udid=$(head -1 "$w/phone.log")
	[ -n "$udid" ]
	check phone-plugged $? "$udid"

	# usbmuxd with its preflight (it pairs with the fake lockdownd by itself).
	usbmuxd -f -v >"$w/usbmuxd.log" 2>&1 &
	m=$!
	wait_for 10 test -S /var/run/usbmuxd
	wait_for 20 listed "$udid"
	check usbmuxd-lists-phone $? "idevice_id -l"
	wait_for 10 test -f "/var/lib/lockdown/$udid.plist"
	check usbmuxd-preflight-paired $? "/var/lib/lockdown/$udid.plist"
	c0=$(ticks $m)
	sleep 2
	c1=$(ticks $m)
	[ $((c1 - c0)) -le 10 ]
	check usbmuxd-idle-no-busy-loop $? "$((c1 - c0)) ticks in 2 s"
	out=$(timeout -k 10 20 ideviceinfo -s -k ProductVersion 2>&1)
	[ "$out" = "14.8.1" ]
	check ideviceinfo-simple $? "$out"
	out=$(timeout -k 10 20 ideviceinfo -k DeviceName 2>&1)
	[ -n "$out" ] && ! echo "$out" | grep -qi error
	check ideviceinfo-session $? "$out"
	out=$(timeout -k 10 20 idevicepair validate 2>&1)
	echo "$out" | grep -q SUCCESS
	check idevicepair-validate $? "$out"

	rm -rf "$w/idb"
	mkdir -p "$w/idb"
	t0=$(now)
	timeout -k 10 180 idevicebackup2 backup --full "$w/idb" >"$w/idevicebackup2.log" 2>&1
	rc=$?
	t1=$(now)
	grep -q 'Backup Successful' "$w/idevicebackup2.log"
	check idevicebackup2-backup $? "rc $rc"
	local theirs
	theirs=$(mbps "$(du -sbL "$w/idb" | cut -f1)" "$t0" "$t1")
	echo "METRIC idevicebackup2_backup_MBps $theirs"
	timeout -k 10 180 idevicebackup2 restore --system --settings "$w/idb" >"$w/idevicerestore.log" 2>&1
	rc=$?
	grep -q 'Restore Successful' "$w/idevicerestore.log"
	check idevicebackup2-restore $? "rc $rc"

	# Hot-plug while usbmuxd runs: unplug, replug.
	kill -TERM $p
	wait $p
	wait_for 10 not_listed "$udid"
	check usbmuxd-sees-unplug $?
	"$w/usbemu-phone" -phone "$w/phones/$udid" >"$w/phone2.log" 2>&1 &
	p=$!
	wait_for 20 listed "$udid"
	check usbmuxd-sees-replug $?
	stop_usbmuxd $m

	# Our host (direct USB through the gousb adapter) on the same phone.
	local IB="$w/ibackup" pd="$w/pairs"
	wait_for 20 sh -c "'$IB' devices | grep -qx '$udid'"
	check ibackup-devices $?
	out=$(timeout -s QUIT -k 10 30 "$IB" pair --pair-dir "$pd" 2>&1)
	check ibackup-pair $? "$(echo "$out" | tail -1)"
	out=$(timeout -s QUIT -k 10 30 "$IB" info --pair-dir "$pd" 2>&1)
	echo "$out" | grep -q '14.8.1'
	check ibackup-info $?
	t0=$(now)
	timeout -s QUIT -k 10 180 "$IB" backup --pair-dir "$pd" "$w/ours" >"$w/ibackup-backup.log" 2>&1
	rc=$?
	t1=$(now)
	check ibackup-backup $rc "$(tail -1 "$w/ibackup-backup.log")"
	local ours
	ours=$(mbps "$(du -sbL "$w/ours/$udid" | cut -f1)" "$t0" "$t1")
	echo "METRIC ibackup_backup_MBps $ours"
	echo "METRIC ibackup_over_idevicebackup2 $(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f", a / b }')"
	timeout -s QUIT -k 10 60 "$IB" verify "$w/ours" >"$w/verify1.log" 2>&1
	check ibackup-verify $?
	timeout -s QUIT -k 10 180 "$IB" restore --pair-dir "$pd" "$w/ours" >"$w/ibackup-restore.log" 2>&1
	check ibackup-restore $? "$(tail -1 "$w/ibackup-restore.log")"

	# Unplug mid-backup: a clear error, the last good backup intact.
	local before after
	before=$(cd "$w/ours/$udid" && find . -type f -printf '%P %s\n' | sort | md5sum)
	timeout -s QUIT -k 10 60 "$IB" backup --full --pair-dir "$pd" "$w/ours" >"$w/ibackup-unplug.log" 2>&1 &
	local b=$!
	# Pull the cable while files are flowing.
	wait_for 30 grep -q 'receiving' "$w/ibackup-unplug.log"
	sleep 0.3
	kill -TERM $p
	wait $p
	wait $b
	rc=$?
	[ $rc -ne 0 ] && [ $rc -ne 124 ]
	check ibackup-unplug-mid-backup-fails $? "rc $rc (124: hung, goroutine dump in the log): $(grep -m1 'ibackup backup:\|^SIGQUIT' "$w/ibackup-unplug.log")"
	after=$(cd "$w/ours/$udid" && find . -type f -printf '%P %s\n' | sort | md5sum)
	timeout -s QUIT -k 10 60 "$IB" verify "$w/ours" >"$w/verify2.log" 2>&1 && [ "$before" = "$after" ]
	check ibackup-last-good-backup-intact $? "verify: $(tail -1 "$w/verify2.log")"
}

case "${1:-}" in
__inner)
	shift
	step=$1
	shift
	"inner_$step" "$@"
	exit 0
	;;
esac

# ---- outer: prerequisites, build, then each step inside a fresh bus ------------
if [ "$(id -u)" -ne 0 ]; then
	bad prerequisites "must run as root"
	finish
fi
missing=
for c in umockdev-wrapper usbmuxd idevice_id ideviceinfo idevicepair idevicebackup2 lsusb go gcc pkg-config timeout awk; do
	command -v "$c" >/dev/null || missing="$missing $c"
done
$PY -c 'import gi; gi.require_version("UMockdev", "1.0"); from gi.repository import UMockdev' 2>/dev/null ||
	missing="$missing gir1.2-umockdev-1.0/python3-gi"
pkg-config --exists libusb-1.0 2>/dev/null || missing="$missing libusb-1.0-0-dev"
if [ -n "$missing" ]; then
	bad prerequisites "missing:$missing"
	finish
fi
if [ -e /var/run/usbmuxd ]; then
	bad prerequisites "/var/run/usbmuxd exists: stop the running usbmuxd first"
	finish
fi
ok prerequisites

work=$(mktemp -d /tmp/usbemu-ci.XXXXXX)
export TMPDIR=$work # umockdev testbeds go here
lockdown_existed=0
[ -d /var/lib/lockdown ] && lockdown_existed=1
cleanup() {
	rm -f /var/run/usbmuxd /var/run/usbmuxd.pid
	for f in "$work"/phones/*/; do
		[ -d "$f" ] && rm -f "/var/lib/lockdown/$(basename "$f").plist"
	done
	[ $lockdown_existed -eq 0 ] && rm -rf /var/lib/lockdown
	if [ $fail -eq 0 ] && [ $verbose -eq 0 ]; then rm -rf "$work"; else echo "logs kept in $work"; fi
}
trap cleanup EXIT

cd "$repo" || exit 1
if timeout -k 10 600 go test -c -tags libusb -o "$work/usbemu.test" ./fakedevice/usbemu/ >"$work/build.log" 2>&1 &&
	timeout -k 10 600 go build -o "$work/usbemu-phone" ./fakedevice/usbemu/cmd/usbemu-phone >>"$work/build.log" 2>&1 &&
	timeout -k 10 600 go build -tags libusb -o "$work/ibackup" ./cmd/ibackup >>"$work/build.log" 2>&1; then
	ok build
else
	bad build "$(tail -3 "$work/build.log")"
	finish
fi

inbus() { # inbus LOG CMD...: run CMD in a fresh emulated bus
	local log=$1
	shift
	timeout -k 10 600 umockdev-wrapper "$PY" "$BUS" --socket "$work/bus.sock" --stats "$log.stats.json" -- "$@" >"$log" 2>&1
}
kill_strays() { # a usbmuxd left by a crashed step would block the next one
	local pid
	pid=$(cat /var/run/usbmuxd.pid 2>/dev/null)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		bad stray-usbmuxd "pid $pid outlived its step"
		kill -KILL "$pid"
	fi
	rm -f /var/run/usbmuxd /var/run/usbmuxd.pid
}
collect() { # collect LOG: count CHECK lines, print METRIC lines
	local line name detail
	while read -r line; do
		case "$line" in
		"CHECK "*)
			set -- $line
			name=$3
			detail=${line#CHECK $2 $3}
			detail=${detail# }
			if [ "$2" = ok ]; then ok "$name" "$detail"; else bad "$name" "$detail"; fi
			;;
		"METRIC "*) echo "     ${line#METRIC }" ;;
		esac
	done <"$1"
	[ $verbose -eq 1 ] && cat "$1"
}

# Go tests under the bus: gousb direct, our usbmux/usb adapter + usbmux,
# Debian's usbmuxd with the echo phone, and the throughput ratio.
inbus "$work/gotests.log" "$work/usbemu.test" -test.v -test.timeout 300s \
	-test.bench ThroughputRatio -test.benchtime 1x
rc=$?
while read -r line; do
	case "$line" in
	"--- PASS: "*) set -- $line; ok "go:$3" ;;
	"--- FAIL: "*) set -- $line; bad "go:$3" ;;
	*"METRIC "*) echo "     ${line#*METRIC }" ;;
	Benchmark*/op*) echo "     $line" ;;
	esac
done < <(grep -v '^ *--- PASS: Fuzz.*/seed#\|^ *--- PASS: .*/seed#' "$work/gotests.log" | sed 's/^ *//')
if [ $rc -ne 0 ] && ! grep -q '^--- FAIL' "$work/gotests.log"; then
	bad go-test-binary "exit $rc: $(grep -m1 '^SIG\|^panic\|^fatal' "$work/gotests.log")"
fi
kill_strays
[ $verbose -eq 1 ] && cat "$work/gotests.log"

inbus "$work/lsusb.log" "$self" __inner lsusb "$work"
rc=$?
collect "$work/lsusb.log"
kill_strays
[ $rc -eq 0 ] && grep -q '^CHECK' "$work/lsusb.log" || bad lsusb-step "exit $rc (124 = timed out): $(tail -1 "$work/lsusb.log")"

inbus "$work/tools.log" "$self" __inner tools "$work"
rc=$?
collect "$work/tools.log"
kill_strays
[ $rc -eq 0 ] && grep -q '^CHECK' "$work/tools.log" || bad tools-step "exit $rc (124 = timed out): $(tail -1 "$work/tools.log")"

finish
