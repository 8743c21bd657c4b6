package notifyd

import (
	"github.com/ibackup/ibackup/fakedevice/lockdownd"
	"github.com/ibackup/ibackup/lockdown/notifyproxy"
)

// InsecureServiceName is the notification_proxy variant usable before
// pairing (usbmuxd's preflight starts it, usb-usbmux-lockdown.md §7).
const InsecureServiceName = "com.apple.mobile.insecure_notification_proxy"

// Service returns the lockdownd service entry for
// com.apple.mobile.notification_proxy on a new Server for cfg. To share the
// hub with the insecure variant, use (*Server).Service and
// (*Server).InsecureService of one Server.
func Service(cfg Config) lockdownd.Service { return New(cfg).Service() }

// Service returns the lockdownd entry for notification_proxy served by s.
func (s *Server) Service() lockdownd.Service {
	return lockdownd.Service{Name: notifyproxy.ServiceName, Serve: s.Serve}
}

// InsecureService returns the entry for insecure_notification_proxy served
// by s (same hub).
func (s *Server) InsecureService() lockdownd.Service {
	return lockdownd.Service{Name: InsecureServiceName, Serve: s.Serve}
}
