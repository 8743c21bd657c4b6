package notifyproxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

const relayXML = `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>Command</key>
	<string>RelayNotification</string>
	<key>Name</key>
	<string>com.apple.itunes-client.syncCancelRequest</string>
</dict>
</plist>
`

func TestDecodeMessage(t *testing.T) {
	m, err := DecodeMessage([]byte(relayXML))
	require.NoError(t, err)
	assert.Equal(t, Message{Command: CommandRelay, Name: SyncCancelRequest}, m)

	bin, err := plistconn.Marshal(map[string]any{"Command": "ProxyDeath"}, plistconn.Binary)
	require.NoError(t, err)
	m, err = DecodeMessage(bin)
	require.NoError(t, err)
	assert.Equal(t, CommandProxyDeath, m.Command)

	unknown, err := plistconn.Marshal(map[string]any{"Command": "SomethingNew", "Extra": 1}, plistconn.XML)
	require.NoError(t, err)
	m, err = DecodeMessage(unknown)
	require.NoError(t, err, "unknown commands decode so callers can skip them")
	assert.Equal(t, Command("SomethingNew"), m.Command)

	for name, in := range map[string]any{
		"no command":     map[string]any{"Name": "x"},
		"command type":   map[string]any{"Command": 3},
		"relay, no name": map[string]any{"Command": "RelayNotification"},
		"name type":      map[string]any{"Command": "RelayNotification", "Name": []any{"x"}},
		"array":          []any{"RelayNotification"},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := plistconn.Marshal(in, plistconn.XML)
			require.NoError(t, err)
			_, err = DecodeMessage(b)
			assert.ErrorIs(t, err, ErrMalformed)
		})
	}
	_, err = DecodeMessage([]byte("not a plist"))
	assert.ErrorIs(t, err, ErrMalformed)
}

func TestEncodeIsXMLWithExactKeys(t *testing.T) {
	b, err := Message{Command: CommandObserve, Name: SyncCancelRequest}.Encode(plistconn.XML)
	require.NoError(t, err)
	s := string(b)
	assert.Contains(t, s, "<key>Command</key>\n\t\t<string>ObserveNotification</string>")
	assert.Contains(t, s, "<key>Name</key>\n\t\t<string>com.apple.itunes-client.syncCancelRequest</string>")
	b, err = Message{Command: CommandShutdown}.Encode(plistconn.XML)
	require.NoError(t, err)
	assert.NotContains(t, string(b), "Name", "Shutdown carries only Command (§5.2)")
	_, err = Message{Command: CommandPost}.Encode(plistconn.XML)
	assert.ErrorIs(t, err, ErrMalformed)
}

// FuzzDecodeMessage: decoding never panics, and what decodes survives an
// encode/decode round trip unchanged.
func FuzzDecodeMessage(f *testing.F) {
	f.Add([]byte(relayXML))
	if b, err := plistconn.Marshal(map[string]any{"Command": "ProxyDeath"}, plistconn.Binary); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		for _, format := range []plistconn.Format{plistconn.XML, plistconn.Binary} {
			enc, err := m.Encode(format)
			if err != nil {
				t.Fatalf("encode %+v: %v", m, err)
			}
			again, err := DecodeMessage(enc)
			if err != nil || again != m {
				t.Fatalf("round trip %+v -> %+v, %v", m, again, err)
			}
		}
	})
}
