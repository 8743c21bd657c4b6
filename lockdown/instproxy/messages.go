// Package instproxy is the host client of installation_proxy
// ("com.apple.mobile.installation_proxy"), used by a backup host to list the
// installed apps for Info.plist. The fake device (fakedevice/instproxyd)
// reuses its message types.
//
// Wire facts: libimobiledevice-client-needs.md §4.4 (the exact Browse
// request idevicebackup2 sends) and §5.3 (the streamed replies);
// mobilebackup2-and-backup-format.md §5.2 (which attributes Info.plist
// needs).
package instproxy

import (
	"errors"
	"fmt"

	"github.com/ibackup/ibackup/lockdown/plistconn"
)

// ServiceName is the lockdown name of the service.
const ServiceName = "com.apple.mobile.installation_proxy"

// Application types for ClientOptions.ApplicationType.
const (
	AppTypeUser   = "User"
	AppTypeSystem = "System"
	AppTypeAny    = "Any"
)

// Attribute names used by backup hosts.
const (
	AttrBundleID        = "CFBundleIdentifier"
	AttrApplicationSINF = "ApplicationSINF"
	AttrITunesMetadata  = "iTunesMetadata"
	AttrApplicationType = "ApplicationType"
)

// BackupAttributes is the ReturnAttributes list idevicebackup2 asks for
// (§4.4).
var BackupAttributes = []string{AttrBundleID, AttrApplicationSINF, AttrITunesMetadata}

// Status values of streamed replies (§5.3).
const (
	StatusBrowsing = "BrowsingApplications"
	StatusComplete = "Complete"
)

// ClientOptions is the ClientOptions dict of a request.
type ClientOptions struct {
	ApplicationType  string   `plist:"ApplicationType,omitempty"`
	ReturnAttributes []string `plist:"ReturnAttributes,omitempty"`
}

// Request is a command sent to installation_proxy (XML, §4.4).
type Request struct {
	Command       string         `plist:"Command"`
	ClientOptions *ClientOptions `plist:"ClientOptions,omitempty"`
}

// Response is one streamed reply. Pointer fields are absent when nil.
type Response struct {
	Status           string           `plist:"Status,omitempty"`
	CurrentList      []map[string]any `plist:"CurrentList,omitempty"`
	CurrentAmount    *uint64          `plist:"CurrentAmount,omitempty"`
	CurrentIndex     *uint64          `plist:"CurrentIndex,omitempty"`
	Total            *uint64          `plist:"Total,omitempty"`
	Error            string           `plist:"Error,omitempty"`
	ErrorDescription string           `plist:"ErrorDescription,omitempty"`
}

// ErrMalformed reports a reply that does not decode.
var ErrMalformed = errors.New("instproxy: malformed reply")

// DecodeResponse decodes one reply body (XML or binary).
func DecodeResponse(b []byte) (*Response, error) {
	var r Response
	if err := plistconn.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return &r, nil
}

// Apps returns the entries of a BrowsingApplications reply: CurrentAmount,
// when present and not larger than the list, overrides its length (§5.3).
func (r *Response) Apps() []App {
	list := r.CurrentList
	if r.CurrentAmount != nil && *r.CurrentAmount < uint64(len(list)) {
		list = list[:*r.CurrentAmount]
	}
	apps := make([]App, len(list))
	for i, m := range list {
		apps[i] = App(m)
	}
	return apps
}

// Error is an Error reply from the device.
type Error struct {
	Code        string // the Error string, e.g. "APIInternalError"
	Description string // ErrorDescription, if any
}

// Error formats the device error.
func (e *Error) Error() string {
	if e.Description != "" {
		return fmt.Sprintf("instproxy: device error %s: %s", e.Code, e.Description)
	}
	return "instproxy: device error " + e.Code
}

// App is one application's attribute dict.
type App map[string]any

// BundleID returns CFBundleIdentifier, or "" when absent or not a string.
func (a App) BundleID() string {
	s, _ := a[AttrBundleID].(string)
	return s
}

// Data returns a data-valued attribute such as ApplicationSINF.
func (a App) Data(key string) ([]byte, bool) {
	b, ok := a[key].([]byte)
	return b, ok
}
