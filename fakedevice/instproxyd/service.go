package instproxyd

import (
	"github.com/ibackup/ibackup/fakedevice/lockdownd"
	"github.com/ibackup/ibackup/lockdown/instproxy"
)

// Service returns the lockdownd service entry for
// com.apple.mobile.installation_proxy serving cfg's apps.
func Service(cfg Config) lockdownd.Service { return New(cfg).Service() }

// Service returns the lockdownd entry served by s.
func (s *Server) Service() lockdownd.Service {
	return lockdownd.Service{Name: instproxy.ServiceName, Serve: s.Serve}
}
