package fakedevice

import (
	"crypto/sha256"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/ibackup/ibackup/fakedevice/phone"
)

// installedApps derives installation_proxy's app list from the phone's
// content: every AppDomain-<bundle> directory is an installed app
// (mobilebackup2-and-backup-format.md §5.6). Apple's own bundles are System
// apps; the others are User apps with the ApplicationSINF and
// iTunesMetadata data a backup host copies into Info.plist
// (libimobiledevice-client-needs.md §4.4).
func installedApps(p *phone.Phone) ([]map[string]any, error) {
	ents, err := os.ReadDir(p.FilesDir())
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("fakedevice: %w", err)
	}
	var bundles []string
	for _, e := range ents {
		if b, ok := strings.CutPrefix(e.Name(), "AppDomain-"); ok && e.IsDir() && b != "" {
			bundles = append(bundles, b)
		}
	}
	sort.Strings(bundles)
	var out []map[string]any
	for i, b := range bundles {
		h := sha256.Sum256([]byte(b))
		uuid := fmt.Sprintf("%X-%X-%X-%X-%X", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
		app := map[string]any{
			"CFBundleIdentifier":         b,
			"CFBundleVersion":            fmt.Sprintf("%d.%d", 1+i, h[16]%10),
			"CFBundleDisplayName":        displayName(b),
			"Path":                       "/private/var/containers/Bundle/Application/" + uuid + "/" + displayName(b) + ".app",
			"Container":                  "/private/var/mobile/Containers/Data/Application/" + uuid,
			"ApplicationType":            "User",
			"ApplicationSINF":            h[:],
			"iTunesMetadata":             []byte(fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?><plist version="1.0"><dict><key>itemName</key><string>%s</string></dict></plist>`, displayName(b))),
			"CFBundleShortVersionString": fmt.Sprintf("%d.0", 1+i),
		}
		if strings.HasPrefix(b, "com.apple.") {
			app["ApplicationType"] = "System"
			delete(app, "ApplicationSINF")
			delete(app, "iTunesMetadata")
		}
		out = append(out, app)
	}
	return out, nil
}

// displayName turns a bundle ID into a display name ("com.example.chat" → "Chat").
func displayName(bundle string) string {
	i := strings.LastIndexByte(bundle, '.')
	n := bundle[i+1:]
	if n == "" {
		return bundle
	}
	return strings.ToUpper(n[:1]) + n[1:]
}
