package usbmux

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunkReader returns its chunks one per Read, like bulk transfers.
type chunkReader struct{ chunks [][]byte }

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.chunks[0])
	if n < len(r.chunks[0]) {
		r.chunks[0] = r.chunks[0][n:]
	} else {
		r.chunks = r.chunks[1:]
	}
	return n, nil
}

// writeLog records every Write call as one transfer.
type writeLog struct{ writes [][]byte }

func (w *writeLog) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(string(bytes.ReplaceAll([]byte(s), []byte(" "), nil)))
	require.NoError(t, err)
	return b
}

// TestHandshakeBytes checks VERSION and SETUP against the byte strings of §2.2.
func TestHandshakeBytes(t *testing.T) {
	w := &writeLog{}
	f := NewFramer(w, &chunkReader{}, FramerConfig{})
	require.NoError(t, f.WritePacket(ProtoVersion, VersionPayload{Major: 2}.Append(nil)))
	f.SetVersion(2)
	f.ResetSeq()
	require.NoError(t, f.WritePacket(ProtoSetup, []byte{SetupByte}))
	syn := TCPHeader{SrcPort: 1, DstPort: 62078, Flags: FlagSYN, Window: 512}
	require.NoError(t, f.WriteTCP(syn, nil))
	require.Len(t, w.writes, 3, "one Write per packet")
	assert.Equal(t, unhex(t, "00000000 00000014 00000002 00000000 00000000"), w.writes[0])
	assert.Equal(t, unhex(t, "00000002 00000011 FEEDFACE 0000 FFFF 07"), w.writes[1])
	// §2.3 example: host tx_seq 1, rx_seq still 0xFFFF.
	assert.Equal(t, unhex(t, "00000006 00000024 FEEDFACE 0001 FFFF 0001 F27E 00000000 00000000 50 02 0200 0000 0000"), w.writes[2])
}

func packet(t *testing.T, v int, h Header, payload []byte) []byte {
	t.Helper()
	h.Length = uint32(HeaderSize(v) + len(payload))
	return append(AppendHeader(nil, h, v), payload...)
}

func TestReadPacketReassembly(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB}, 40000)
	p1 := packet(t, 2, Header{Protocol: ProtoTCP, Magic: Magic, TxSeq: 7, RxSeq: 3}, big)
	p2 := packet(t, 2, Header{Protocol: ProtoControl, Magic: 0xFACEFACE}, []byte("\x07hello\n"))
	stream := append(append([]byte(nil), p1...), p2...)
	// Split across 16 KiB reads with a ZLP in between, and the second packet glued to the tail.
	r := &chunkReader{chunks: [][]byte{stream[:16384], {}, stream[16384:32768], stream[32768:]}}
	f := NewFramer(io.Discard, r, FramerConfig{Device: false})
	f.SetVersion(2)
	got, err := f.ReadPacket()
	require.NoError(t, err)
	assert.Equal(t, ProtoTCP, got.Header.Protocol)
	assert.Equal(t, big, got.Payload)
	got, err = f.ReadPacket()
	require.NoError(t, err)
	msg, err := ParseControl(got.Payload)
	require.NoError(t, err)
	assert.Equal(t, ControlMessage{Type: ControlTypeInfo, Text: "hello"}, msg)
	_, err = f.ReadPacket()
	assert.ErrorIs(t, err, io.EOF)
}

func TestReadPacketLimits(t *testing.T) {
	huge := AppendHeader(nil, Header{Protocol: ProtoTCP, Length: MaxDevicePacket + 1}, 2)
	f := NewFramer(io.Discard, &chunkReader{chunks: [][]byte{huge}}, FramerConfig{})
	f.SetVersion(2)
	_, err := f.ReadPacket()
	assert.ErrorIs(t, err, ErrTooLarge)

	short := AppendHeader(nil, Header{Protocol: ProtoTCP, Length: 4}, 1)
	f = NewFramer(io.Discard, &chunkReader{chunks: [][]byte{short}}, FramerConfig{})
	_, err = f.ReadPacket()
	assert.ErrorIs(t, err, ErrMalformed)

	// A device framer accepts at most MaxHostPacket.
	over := AppendHeader(nil, Header{Protocol: ProtoTCP, Length: MaxHostPacket + 1}, 2)
	f = NewFramer(io.Discard, &chunkReader{chunks: [][]byte{over}}, FramerConfig{Device: true})
	f.SetVersion(2)
	_, err = f.ReadPacket()
	assert.ErrorIs(t, err, ErrTooLarge)

	truncated := packet(t, 1, Header{Protocol: ProtoVersion}, make([]byte, 12))[:15]
	f = NewFramer(io.Discard, &chunkReader{chunks: [][]byte{truncated}}, FramerConfig{})
	_, err = f.ReadPacket()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReadPacketEndlessZLP(t *testing.T) {
	f := NewFramer(io.Discard, zeroReader{}, FramerConfig{})
	_, err := f.ReadPacket()
	assert.ErrorIs(t, err, io.ErrNoProgress)
}

func TestWritePacketLimit(t *testing.T) {
	w := &writeLog{}
	f := NewFramer(w, zeroReader{}, FramerConfig{})
	f.SetVersion(2)
	err := f.WriteTCP(TCPHeader{}, make([]byte, MaxHostPayload))
	require.NoError(t, err)
	assert.Len(t, w.writes[0], MaxHostPacket)
	err = f.WriteTCP(TCPHeader{}, make([]byte, MaxHostPayload+1))
	assert.True(t, errors.Is(err, ErrTooLarge))
	assert.Len(t, w.writes, 1)
}

// TestSeqFields checks §2.2: the host echoes the device's rx_seq, the device echoes the host's
// tx_seq, and tx_seq counts packets from the SETUP reset.
func TestSeqFields(t *testing.T) {
	in := packet(t, 2, Header{Protocol: ProtoTCP, Magic: Magic, TxSeq: 0x1111, RxSeq: 0x2222}, make([]byte, 20))
	for _, device := range []bool{false, true} {
		w := &writeLog{}
		f := NewFramer(w, &chunkReader{chunks: [][]byte{in}}, FramerConfig{Device: device})
		f.SetVersion(2)
		f.ResetSeq()
		require.NoError(t, f.WritePacket(ProtoSetup, []byte{SetupByte}))
		_, err := f.ReadPacket()
		require.NoError(t, err)
		require.NoError(t, f.WriteTCP(TCPHeader{}, nil))
		h0, err := ParseHeader(w.writes[0], 2)
		require.NoError(t, err)
		h1, err := ParseHeader(w.writes[1], 2)
		require.NoError(t, err)
		assert.Equal(t, uint16(0), h0.TxSeq)
		assert.Equal(t, uint16(0xFFFF), h0.RxSeq)
		assert.Equal(t, uint16(1), h1.TxSeq)
		want := uint16(0x2222)
		if device {
			want = 0x1111
		}
		assert.Equal(t, want, h1.RxSeq, "device=%v", device)
	}
}

func TestParseErrors(t *testing.T) {
	_, _, err := ParseTCP(make([]byte, 19))
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseVersion(make([]byte, 11))
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseControl(nil)
	assert.ErrorIs(t, err, ErrMalformed)
	_, err = ParseHeader(make([]byte, 7), 1)
	assert.ErrorIs(t, err, ErrMalformed)
}

// transferReader is a chunkReader that also lends its chunks (TransferReader).
type transferReader struct{ chunkReader }

func (r *transferReader) ReadTransfer(max int) ([]byte, error) {
	if len(r.chunks) == 0 {
		return nil, io.EOF
	}
	b := r.chunks[0]
	if len(b) > max {
		r.chunks[0] = b[max:]
		return b[:max], nil
	}
	r.chunks = r.chunks[1:]
	return b, nil
}

// TestReadPacketTransfers: over a TransferReader, a transfer holding one whole packet is used in
// place and everything else (split packets, glued packets, ZLPs, truncation) reads as over Read.
func TestReadPacketTransfers(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB}, 40000)
	p1 := packet(t, 2, Header{Protocol: ProtoTCP, Magic: Magic, TxSeq: 7, RxSeq: 3}, big)
	p2 := packet(t, 2, Header{Protocol: ProtoControl, Magic: 0xFACEFACE}, []byte("\x07hello\n"))
	p3 := packet(t, 2, Header{Protocol: ProtoTCP, Magic: Magic, TxSeq: 8, RxSeq: 4}, []byte("whole"))
	stream := append(append([]byte(nil), p1...), p2...)
	r := &transferReader{chunkReader{chunks: [][]byte{p3, {}, stream[:16384], stream[16384:32768], stream[32768:], p3}}}
	f := NewFramer(io.Discard, r, FramerConfig{Device: true})
	f.SetVersion(2)
	for i, want := range []string{"whole", string(big), "\x07hello\n", "whole"} {
		got, err := f.ReadPacket()
		require.NoError(t, err, "packet %d", i)
		assert.Equal(t, want, string(got.Payload), "packet %d", i)
	}
	assert.Equal(t, uint32(8), f.lastRx.Load(), "device role echoes tx_seq")
	_, err := f.ReadPacket()
	assert.ErrorIs(t, err, io.EOF)

	truncated := packet(t, 1, Header{Protocol: ProtoVersion}, make([]byte, 12))[:15]
	f = NewFramer(io.Discard, &transferReader{chunkReader{chunks: [][]byte{truncated}}}, FramerConfig{})
	_, err = f.ReadPacket()
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)

	huge := AppendHeader(nil, Header{Protocol: ProtoTCP, Length: MaxDevicePacket + 1}, 2)
	f = NewFramer(io.Discard, &transferReader{chunkReader{chunks: [][]byte{huge}}}, FramerConfig{})
	f.SetVersion(2)
	_, err = f.ReadPacket()
	assert.ErrorIs(t, err, ErrTooLarge)
}
