package afcd

import (
	"context"
	"net"

	"github.com/ibackup/ibackup/fakedevice/lockdownd"
	"github.com/ibackup/ibackup/lockdown/afc"
)

// Service returns the lockdownd service entry for com.apple.afc (no service
// SSL, as seen on devices: usb-usbmux-lockdown.md §5, afc StartService reply
// without EnableServiceSSL). Each connection opens its own Server on
// cfg.Root; they share cfg.Locks (created here when nil), so lock semantics
// hold across all connections started through this entry.
func Service(cfg Config) lockdownd.Service {
	if cfg.Locks == nil {
		cfg.Locks = NewLockTable()
	}
	return lockdownd.Service{
		Name: afc.ServiceName,
		Serve: func(ctx context.Context, conn net.Conn) error {
			s, err := New(cfg)
			if err != nil {
				_ = conn.Close()
				return err
			}
			defer s.Close()
			return s.Serve(ctx, conn)
		},
	}
}

// Service returns the lockdownd service entry serving connections with s.
func (s *Server) Service() lockdownd.Service {
	return lockdownd.Service{Name: afc.ServiceName, Serve: s.Serve}
}
