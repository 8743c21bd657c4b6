// Package instproxyd is the fake phone's installation_proxy service
// ("com.apple.mobile.installation_proxy"): it answers Browse from an app
// list given in its Config, streaming BrowsingApplications batches and a
// final Complete like a device (libimobiledevice-client-needs.md §5.3), with
// the message types of the host client (lockdown/instproxy).
package instproxyd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/ibackup/ibackup/lockdown/instproxy"
	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// DefaultBatchSize is how many apps one BrowsingApplications reply carries
// when Config.BatchSize is 0.
const DefaultBatchSize = 10

// Config describes the phone's installed apps.
type Config struct {
	// Apps are the attribute dicts of the installed apps. Each should carry
	// CFBundleIdentifier and ApplicationType ("User" or "System"); backed-up
	// user apps also carry ApplicationSINF and iTunesMetadata (data).
	Apps []map[string]any
	// BatchSize is the number of apps per reply (DefaultBatchSize when 0).
	BatchSize int
}

// Server serves installation_proxy connections. Config.Apps is only read.
type Server struct {
	cfg Config
}

// New returns a server for cfg.
func New(cfg Config) *Server {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	return &Server{cfg: cfg}
}

// Handler returns s.Serve, the shape lockdownd.Service.Serve expects.
func (s *Server) Handler() func(ctx context.Context, conn net.Conn) error { return s.Serve }

// Serve answers commands on conn until the host closes it or ctx ends. It
// owns conn. Browse is implemented; any other command gets an Error reply
// (the fake's choice of wording). A clean close returns nil.
func (s *Server) Serve(ctx context.Context, conn net.Conn) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	defer conn.Close()
	pc := plistconn.New(conn, plistconn.XML)
	pc.MaxSize = 1 << 20
	for {
		var req instproxy.Request
		b, err := pc.ReadRaw()
		if err == nil {
			err = plistconn.Unmarshal(b, &req)
		}
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return context.Cause(ctx)
			case errors.Is(err, io.EOF):
				return nil
			}
			return fmt.Errorf("instproxyd: %w", err)
		}
		if req.Command != "Browse" {
			err = pc.WriteMessage(instproxy.Response{
				Error: "UnknownCommand", ErrorDescription: fmt.Sprintf("command %q is not supported", req.Command)})
		} else {
			err = s.browse(pc, req.ClientOptions)
		}
		if err != nil {
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return fmt.Errorf("instproxyd: %w", err)
		}
	}
}

// Select returns the apps Browse with opts would return: filtered by
// ApplicationType ("Any" or empty = all) and reduced to ReturnAttributes
// (nil = all attributes).
func (s *Server) Select(opts *instproxy.ClientOptions) []map[string]any {
	var out []map[string]any
	for _, app := range s.cfg.Apps {
		if opts != nil && opts.ApplicationType != "" && opts.ApplicationType != instproxy.AppTypeAny {
			if t, _ := app[instproxy.AttrApplicationType].(string); t != opts.ApplicationType {
				continue
			}
		}
		if opts == nil || opts.ReturnAttributes == nil {
			out = append(out, app)
			continue
		}
		sel := make(map[string]any)
		for k, v := range app {
			if slices.Contains(opts.ReturnAttributes, k) {
				sel[k] = v
			}
		}
		out = append(out, sel)
	}
	return out
}

func (s *Server) browse(pc *plistconn.Conn, opts *instproxy.ClientOptions) error {
	apps := s.Select(opts)
	total := uint64(len(apps))
	for i := 0; i < len(apps); i += s.cfg.BatchSize {
		batch := apps[i:min(len(apps), i+s.cfg.BatchSize)]
		idx, amount := uint64(i), uint64(len(batch))
		if err := pc.WriteMessage(instproxy.Response{
			Status: instproxy.StatusBrowsing, CurrentList: batch,
			CurrentIndex: &idx, CurrentAmount: &amount, Total: &total,
		}); err != nil {
			return err
		}
	}
	return pc.WriteMessage(instproxy.Response{Status: instproxy.StatusComplete})
}
