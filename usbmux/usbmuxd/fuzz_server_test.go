package usbmuxd

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/ibackup/ibackup/lockdown/pairrecord"
)

// closedDevice's streams end at once.
func closedDevice(context.Context, uint16) (net.Conn, error) {
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

func fuzzSeed(f *testing.F, frames ...*Frame) {
	var b []byte
	for _, fr := range frames {
		b, _ = AppendFrame(b, fr)
	}
	f.Add(b)
}

func plistFrame(f *testing.F, m map[string]any) *Frame {
	r := &Request{MessageType: m["MessageType"].(string)}
	if id, ok := m["DeviceID"].(int); ok {
		r.DeviceID, r.HasDeviceID = uint32(id), true
		r.Port, r.HasPort = lockdownPort, true
	}
	if id, ok := m["PairRecordID"].(string); ok {
		r.PairRecordID = id
		r.PairRecordData, _ = m["PairRecordData"].([]byte)
	}
	b, err := r.Marshal()
	if err != nil {
		f.Fatal(err)
	}
	return &Frame{Version: ProtoPlist, Type: TypePlist, Tag: 1, Payload: b}
}

// FuzzServeConn feeds arbitrary client bytes to a Server: it must answer or
// hang up, never crash or hang.
func FuzzServeConn(f *testing.F) {
	fuzzSeed(f, plistFrame(f, map[string]any{"MessageType": "ListDevices"}), plistFrame(f, map[string]any{"MessageType": "ReadBUID"}))
	fuzzSeed(f, plistFrame(f, map[string]any{"MessageType": "Listen"}))
	fuzzSeed(f, plistFrame(f, map[string]any{"MessageType": "Connect", "DeviceID": 1}))
	fuzzSeed(f, plistFrame(f, map[string]any{"MessageType": "SavePairRecord", "PairRecordID": "x", "PairRecordData": []byte("bplist00\xd0\x08")}),
		plistFrame(f, map[string]any{"MessageType": "ReadPairRecord", "PairRecordID": "x"}),
		plistFrame(f, map[string]any{"MessageType": "DeletePairRecord", "PairRecordID": "x"}))
	fuzzSeed(f, &Frame{Type: TypeConnect, Payload: ConnectRequest{DeviceID: 1, Port: lockdownPort}.Append(nil)})
	fuzzSeed(f, &Frame{Type: TypeListen}, &Frame{Type: TypeListen})
	fuzzSeed(f, &Frame{Version: 9, Type: 99})

	set := NewDeviceSet()
	if _, err := set.Add(Device{UDID: "fuzz"}, closedDevice); err != nil {
		f.Fatal(err)
	}
	srv := NewServer(set, &Options{Records: pairrecord.Dir{Path: f.TempDir()}})
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan struct{}, 2)
		go func() {
			_, _ = client.Write(data)
			client.Close()
			done <- struct{}{}
		}()
		go func() {
			_, _ = io.Copy(io.Discard, client)
			done <- struct{}{}
		}()
		_ = srv.ServeConn(context.Background(), server)
		client.Close()
		<-done
		<-done
	})
}
