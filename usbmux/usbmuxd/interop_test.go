package usbmuxd

import (
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// Interop with Debian 12's libimobiledevice-utils (libusbmuxd 2.0.2): our
// Server on a temporary socket, the real tools pointed at it through
// USBMUXD_SOCKET_ADDRESS. Skipped when the tools are not installed
// (apt-get install libimobiledevice-utils).

// runTool runs a libimobiledevice tool against ts and returns its stdout.
func runTool(t *testing.T, ts *testServer, name string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not installed (apt-get install libimobiledevice-utils)", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "USBMUXD_SOCKET_ADDRESS="+ts.addr)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Logf("%s %v: %v\nstderr: %s", name, args, err, stderr.String())
	}
	return string(out), err
}

// nameDevice answers lockdown GetValue(DeviceName) in plain text, which is
// all `idevice_id UDID` asks (libimobiledevice-client-needs.md §3.1). It
// stands in for the fake lockdownd so the raw Connect path is exercised
// with the real client.
type nameDevice struct {
	name string
	wg   sync.WaitGroup
}

func (d *nameDevice) Dial(_ context.Context, port uint16) (net.Conn, error) {
	if port != lockdownPort {
		return nil, ErrConnRefused
	}
	host, dev := net.Pipe()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer dev.Close()
		pc := plistconn.New(dev, plistconn.XML)
		for {
			var req map[string]any
			if err := pc.ReadMessage(&req); err != nil {
				return
			}
			reply := map[string]any{"Request": req["Request"]}
			if req["Request"] == "GetValue" && req["Key"] == "DeviceName" {
				reply["Key"], reply["Value"] = "DeviceName", d.name
			} else {
				reply["Error"] = "MissingValue"
			}
			if err := pc.WriteMessage(reply); err != nil {
				return
			}
		}
	}()
	return host, nil
}

func TestInteropIdeviceID(t *testing.T) {
	if _, err := exec.LookPath("idevice_id"); err != nil {
		t.Skip("idevice_id not installed (apt-get install libimobiledevice-utils)")
	}
	set := NewDeviceSet()
	named := &nameDevice{name: "Interop Phone"}
	t.Cleanup(named.wg.Wait)
	udids := []string{testUDID(1), testUDID(2), "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"}
	for _, u := range udids {
		_, err := set.Add(Device{UDID: u, ProductID: 0x12A8}, named.Dial)
		require.NoError(t, err)
	}
	ts := startServer(t, set, nil)

	out, err := runTool(t, ts, "idevice_id", "-l")
	require.NoError(t, err)
	got := strings.Fields(out)
	slices.Sort(got)
	want := slices.Clone(udids)
	slices.Sort(want)
	assert.Equal(t, want, got)

	out, err = runTool(t, ts, "idevice_id")
	require.NoError(t, err)
	assert.Contains(t, out, udids[0]+" (USB)")

	// Connect with the byte-swapped port, then plain lockdown over the raw
	// stream.
	out, err = runTool(t, ts, "idevice_id", udids[2])
	require.NoError(t, err)
	assert.Equal(t, "Interop Phone", strings.TrimSpace(out))

	// Detached devices disappear.
	set.Remove(udids[1])
	require.Eventually(t, func() bool { return len(ts.srv.Devices()) == 2 }, 5*time.Second, time.Millisecond)
	out, err = runTool(t, ts, "idevice_id", "-l")
	require.NoError(t, err)
	assert.NotContains(t, out, udids[1])
}

// TestInteropManyTools runs several idevice_id processes at once against
// many devices.
func TestInteropManyTools(t *testing.T) {
	if _, err := exec.LookPath("idevice_id"); err != nil {
		t.Skip("idevice_id not installed (apt-get install libimobiledevice-utils)")
	}
	const nDev, nProc = 20, 8
	set := NewDeviceSet()
	named := &nameDevice{name: "Many"}
	t.Cleanup(named.wg.Wait)
	for i := range nDev {
		_, err := set.Add(Device{UDID: testUDID(i)}, named.Dial)
		require.NoError(t, err)
	}
	ts := startServer(t, set, nil)
	var wg sync.WaitGroup
	outs := make([]string, nProc)
	errs := make([]error, nProc)
	for i := range nProc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				outs[i], errs[i] = runTool(t, ts, "idevice_id", "-l")
			} else {
				outs[i], errs[i] = runTool(t, ts, "idevice_id", testUDID(i))
			}
		}()
	}
	wg.Wait()
	for i := range nProc {
		require.NoError(t, errs[i])
		if i%2 == 0 {
			assert.Len(t, strings.Fields(outs[i]), nDev)
		} else {
			assert.Equal(t, "Many", strings.TrimSpace(outs[i]))
		}
	}
}

func TestInteropIdevicepairSystemBUID(t *testing.T) {
	ts := startServer(t, NewDeviceSet(), nil)
	out, err := runTool(t, ts, "idevicepair", "systembuid")
	require.NoError(t, err)
	buid, err := ts.records.SystemBUID()
	require.NoError(t, err)
	assert.Equal(t, buid, strings.TrimSpace(out), "ReadBUID through libusbmuxd")
}

func TestInteropNoDevices(t *testing.T) {
	ts := startServer(t, NewDeviceSet(), nil)
	out, err := runTool(t, ts, "idevice_id", "-l")
	require.NoError(t, err)
	assert.Empty(t, strings.TrimSpace(out))
}
