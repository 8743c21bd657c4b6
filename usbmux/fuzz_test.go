package usbmux

import (
	"bytes"
	"io"
	"testing"
)

// FuzzParseHeader round-trips v1 and v2 headers.
func FuzzParseHeader(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0x14}, true)
	f.Add([]byte{0, 0, 0, 2, 0, 0, 0, 0x11, 0xFE, 0xED, 0xFA, 0xCE, 0, 0, 0xFF, 0xFF}, false)
	f.Fuzz(func(t *testing.T, b []byte, v1 bool) {
		v := 2
		if v1 {
			v = 1
		}
		h, err := ParseHeader(b, v)
		if err != nil {
			return
		}
		out := AppendHeader(nil, h, v)
		if !bytes.Equal(out, b[:HeaderSize(v)]) {
			t.Fatalf("round trip %x → %+v → %x", b[:HeaderSize(v)], h, out)
		}
	})
}

// FuzzParseTCP round-trips the TCP header (fields we do not keep are fixed on output).
func FuzzParseTCP(f *testing.F) {
	f.Add(TCPHeader{SrcPort: 1, DstPort: 62078, Flags: FlagSYN, Window: 512}.Append(nil))
	f.Add(append(TCPHeader{SrcPort: 62078, DstPort: 1, Seq: 1, Ack: 1, Flags: FlagRST}.Append(nil), "amnesia\n"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParseTCP(b)
		if err != nil {
			return
		}
		h2, p2, err := ParseTCP(append(h.Append(nil), payload...))
		if err != nil || h2 != h || !bytes.Equal(p2, payload) {
			t.Fatalf("round trip mismatch: %v %v", h, h2)
		}
	})
}

// FuzzParseControl checks CONTROL parsing never fails on non-empty input and re-encodes.
func FuzzParseControl(f *testing.F) {
	f.Add([]byte("\x03device is locked\n"))
	f.Add([]byte{7})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseControl(b)
		if err != nil {
			if len(b) != 0 {
				t.Fatalf("non-empty payload rejected: %v", err)
			}
			return
		}
		m2, err := ParseControl(m.Append(nil))
		if err != nil || m2 != m {
			t.Fatalf("round trip %v → %v (%v)", m, m2, err)
		}
	})
}

// FuzzParseVersion round-trips VERSION payloads.
func FuzzParseVersion(f *testing.F) {
	f.Add(VersionPayload{Major: 2}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseVersion(b)
		if err != nil {
			return
		}
		if out := v.Append(nil); !bytes.Equal(out, b[:VersionPayloadSize]) {
			t.Fatalf("round trip %x → %x", b[:VersionPayloadSize], out)
		}
	})
}

// FuzzFramer feeds arbitrary device streams, split at arbitrary points, to a host framer: it must
// return packets within the limits or an error, never panic or over-allocate.
func FuzzFramer(f *testing.F) {
	syn := TCPHeader{SrcPort: 62078, DstPort: 1, Flags: FlagSYN | FlagACK, Window: 512}.Append(nil)
	v2 := AppendHeader(nil, Header{Protocol: ProtoTCP, Length: uint32(16 + len(syn)), Magic: Magic}, 2)
	f.Add(append(v2, syn...), uint16(7), false)
	f.Add(append(AppendHeader(nil, Header{Protocol: ProtoVersion, Length: 20}, 1), VersionPayload{Major: 2}.Append(nil)...), uint16(3), true)
	f.Add(AppendHeader(nil, Header{Protocol: ProtoTCP, Length: 0xFFFFFFFF}, 2), uint16(1), false)
	f.Fuzz(func(t *testing.T, b []byte, split uint16, v1 bool) {
		s := int(split)%(len(b)+1) + 1
		var chunks [][]byte
		for rest := b; len(rest) > 0; {
			n := min(s, len(rest))
			chunks = append(chunks, rest[:n], nil) // with ZLPs in between
			rest = rest[n:]
		}
		fr := NewFramer(io.Discard, &chunkReader{chunks: chunks}, FramerConfig{})
		if !v1 {
			fr.SetVersion(2)
		}
		for range 1000 {
			p, err := fr.ReadPacket()
			if err != nil {
				return
			}
			if int(p.Header.Length) > MaxDevicePacket || len(p.Payload) != int(p.Header.Length)-HeaderSize(fr.Version()) {
				t.Fatalf("bad packet %+v with %d payload bytes", p.Header, len(p.Payload))
			}
			if p.Header.Protocol == ProtoTCP {
				_, _, _ = ParseTCP(p.Payload)
			}
		}
	})
}
