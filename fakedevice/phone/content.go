package phone

import (
	"bytes"
	"database/sql"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ibackup/ibackup/fakedevice/profile"
	"howett.net/plist"
	"math/rand/v2"
	_ "modernc.org/sqlite" // registers the "sqlite" driver for generated databases
)

// kind is what a generated file contains.
type kind int

const (
	kindBinary kind = iota
	kindEmpty
	kindPlist
	kindJPEG
	kindText
	kindSQLite
	kindMovie // the large file that absorbs the size budget
)

// entry is one planned file.
type entry struct {
	rel  string // Domain/relativePath
	kind kind
	size int64
}

// generator holds the state of one Generate call. Not safe for concurrent use.
type generator struct {
	root string
	rng  *rand.Rand
	base time.Time
	prof profile.Profile
}

// apps are the third-party and system apps of the generated phone.
var apps = []string{
	"com.apple.mobilesafari", "com.apple.mobilenotes", "com.example.weather",
	"com.example.chat", "org.example.reader", "com.example.fitness",
}

// skeleton lists the files every generated phone has, most important first
// (a phone with fewer files than this keeps only the head of the list).
// Paths follow the domains of real backups (real-device-profile.md).
var skeleton = []entry{
	{rel: "HomeDomain/Library/SMS/sms.db", kind: kindSQLite},
	{rel: "CameraRollDomain/Media/DCIM/100APPLE/IMG_0001.JPG", kind: kindJPEG},
	{rel: "HomeDomain/Library/Preferences/com.apple.springboard.plist", kind: kindPlist},
	{rel: "HomeDomain/Library/AddressBook/AddressBook.sqlitedb", kind: kindSQLite},
	{rel: "KeychainDomain/keychain-backup.plist", kind: kindPlist},
	{rel: "HomeDomain/Library/Cookies/Cookies.binarycookies", kind: kindEmpty},
	{rel: "CameraRollDomain/Media/PhotoData/Photos.sqlite", kind: kindSQLite},
	{rel: "CameraRollDomain/Media/DCIM/100APPLE/IMG_0002.MOV", kind: kindMovie},
	{rel: "SystemPreferencesDomain/SystemConfiguration/com.apple.wifi.plist", kind: kindPlist},
	{rel: "WirelessDomain/Library/Preferences/com.apple.commcenter.plist", kind: kindPlist},
	{rel: "AppDomain-com.apple.mobilesafari/Library/Safari/History.db", kind: kindSQLite},
	{rel: "AppDomain-com.apple.mobilenotes/Library/Preferences/com.apple.mobilenotes.plist", kind: kindPlist},
	{rel: "AppDomainGroup-group.com.apple.notes/NoteStore.sqlite", kind: kindSQLite},
	{rel: "MediaDomain/Library/SMS/Attachments/3a/10/IMG_4411.jpeg", kind: kindJPEG},
	{rel: "HomeDomain/Library/CallHistoryDB/CallHistory.storedata", kind: kindSQLite},
	{rel: "RootDomain/Library/Preferences/com.apple.locationd.plist", kind: kindPlist},
	{rel: "HealthDomain/Health/healthdb.sqlite", kind: kindSQLite},
	{rel: "TonesDomain/Library/Ringtones/Custom.m4r", kind: kindBinary},
	{rel: "KeyboardDomain/Library/Keyboard/en-dynamic.lm/dynamic-lexicon.dat", kind: kindBinary},
	{rel: "ManagedPreferencesDomain/mobile/com.apple.webcontentfilter.plist", kind: kindPlist},
	{rel: "HomeKitDomain/Library/homed/datastore3.sqlite", kind: kindEmpty},
}

// symlinks are created after the files; targets are relative and stay inside
// their domain, like the 0.4 % symlink rows of a real Manifest.db.
var symlinks = [][2]string{
	{"MediaDomain/Library/SMS/Attachments/latest.jpeg", "3a/10/IMG_4411.jpeg"},
	{"HomeDomain/Library/Caches/com.apple.springboard.plist", "../Preferences/com.apple.springboard.plist"},
}

// emptyDirs are directories without files (directories dominate real backups).
var emptyDirs = []string{
	"HomeDomain/Library/Caches/Snapshots",
	"HomeDomain/Library/Mail",
	"AppDomain-com.example.weather/tmp",
	"AppDomain-com.example.chat/Library/Caches",
	"InstallDomain/Library/Caches",
	"DatabaseDomain/timezone",
	"MobileDeviceDomain/ProvisioningProfiles",
}

// domainTemplates generate the bulk files; weight is the share of files.
var domainTemplates = []struct {
	weight int
	gen    func(g *generator, i int) entry
}{
	{25, func(g *generator, i int) entry {
		dirs := []string{"Library/Preferences", "Library/Caches/com.apple.Maps", "Library/Notes", "Library/Calendar", "Library/Voicemail", "Library/Passes/Cards", "Media/Recordings"}
		return g.pick("HomeDomain/"+dirs[g.rng.IntN(len(dirs))], i)
	}},
	{10, func(g *generator, i int) entry {
		return entry{rel: fmt.Sprintf("CameraRollDomain/Media/DCIM/100APPLE/IMG_%04d.JPG", 100+i), kind: kindJPEG}
	}},
	{6, func(g *generator, i int) entry {
		return entry{rel: fmt.Sprintf("CameraRollDomain/Media/PhotoData/Thumbnails/V2/DCIM/100APPLE/IMG_%04d.JPG/5005.JPG", 100+i), kind: kindJPEG}
	}},
	{22, func(g *generator, i int) entry {
		app := apps[g.rng.IntN(len(apps))]
		dirs := []string{"Documents", "Library/Preferences", "Library/Caches", "Library/Application Support", "Documents/Inbox"}
		return g.pick("AppDomain-"+app+"/"+dirs[g.rng.IntN(len(dirs))], i)
	}},
	{6, func(g *generator, i int) entry {
		groups := []string{"group.com.apple.notes", "group.com.example.chat.shared"}
		return g.pick("AppDomainGroup-"+groups[g.rng.IntN(len(groups))]+"/Library/Caches", i)
	}},
	{4, func(g *generator, i int) entry {
		return g.pick("AppDomainPlugin-com.example.chat.ShareExtension/Library/Preferences", i)
	}},
	{8, func(g *generator, i int) entry {
		return entry{rel: fmt.Sprintf("MediaDomain/Library/SMS/Attachments/%02x/%02x/IMG_%04d.jpeg", g.rng.IntN(256), g.rng.IntN(16), 5000+i), kind: kindJPEG}
	}},
	{4, func(g *generator, i int) entry { return g.pick("RootDomain/Library/Caches/locationd", i) }},
	{3, func(g *generator, i int) entry { return g.pick("SystemPreferencesDomain/SystemConfiguration", i) }},
	{3, func(g *generator, i int) entry { return g.pick("WirelessDomain/Library/Databases", i) }},
	{3, func(g *generator, i int) entry {
		return g.pick("SysSharedContainerDomain-systemgroup.com.apple.configurationprofiles/Library/ConfigurationProfiles", i)
	}},
	{3, func(g *generator, i int) entry {
		return g.pick("SysContainerDomain-com.apple.siri/Library/Assistant", i)
	}},
	{3, func(g *generator, i int) entry { return g.pick("HealthDomain/Health", i) }},
}

// pick makes a file of a random kind in dir.
func (g *generator) pick(dir string, i int) entry {
	switch r := g.rng.IntN(100); {
	case r < 3:
		return entry{rel: fmt.Sprintf("%s/state-%04d.lock", dir, i), kind: kindEmpty}
	case r < 40:
		return entry{rel: fmt.Sprintf("%s/com.example.item%04d.plist", dir, i), kind: kindPlist}
	case r < 55:
		return entry{rel: fmt.Sprintf("%s/note-%04d.txt", dir, i), kind: kindText}
	default:
		return entry{rel: fmt.Sprintf("%s/%08x-%04d.dat", dir, g.rng.Uint32(), i), kind: kindBinary}
	}
}

// drawSize draws a file size shaped like real backups: median ~640 B, p90
// ~100 KiB, a long tail (real-device-profile.md).
func (g *generator) drawSize() int64 {
	s := math.Exp(6.46 + 3.2*g.rng.NormFloat64())
	return int64(math.Min(math.Max(s, 1), 8<<20))
}

func (g *generator) run(n int, size int64) error {
	plan := append([]entry(nil), skeleton...)
	if n < len(plan) {
		plan = plan[:n]
	}
	total := 0
	for _, t := range domainTemplates {
		total += t.weight
	}
	seen := map[string]bool{}
	for _, e := range plan {
		seen[e.rel] = true
	}
	for i := 0; len(plan) < n; i++ {
		r := g.rng.IntN(total)
		for _, t := range domainTemplates {
			if r < t.weight {
				e := t.gen(g, i)
				if !seen[e.rel] {
					seen[e.rel] = true
					plan = append(plan, e)
				}
				break
			}
			r -= t.weight
		}
	}
	// Size the files: draw realistic sizes, scale down if over budget, and
	// give the remainder to the movie (the "largest file" of a real phone).
	var sum int64
	movie := -1
	for i := range plan {
		switch plan[i].kind {
		case kindEmpty, kindSQLite:
			continue
		case kindMovie:
			movie = i
			continue
		case kindJPEG:
			plan[i].size = 20<<10 + g.drawSize()%(400<<10)
		default:
			plan[i].size = g.drawSize()
		}
		sum += plan[i].size
	}
	budget := size - int64(60<<10) // databases take roughly this
	if budget < 0 {
		budget = 0
	}
	if sum > budget && sum > 0 {
		f := float64(budget) / float64(sum) * 0.8
		sum = 0
		for i := range plan {
			if plan[i].size > 0 {
				plan[i].size = int64(float64(plan[i].size) * f)
				sum += plan[i].size
			}
		}
	}
	if movie >= 0 {
		plan[movie].size = max(budget-sum, 1024)
	}
	for _, e := range plan {
		if err := g.write(e); err != nil {
			return err
		}
	}
	for _, d := range emptyDirs {
		if err := os.MkdirAll(filepath.Join(g.root, filepath.FromSlash(d)), 0o755); err != nil {
			return err
		}
	}
	for _, l := range symlinks {
		dir := filepath.Dir(filepath.Join(g.root, filepath.FromSlash(l[0])))
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(l[1]))); err != nil {
			continue // target not generated (tiny phone)
		}
		if err := os.Symlink(l[1], filepath.Join(g.root, filepath.FromSlash(l[0]))); err != nil {
			return err
		}
	}
	return nil
}

// write creates one file with deterministic content, mode and times.
func (g *generator) write(e entry) error {
	path := filepath.Join(g.root, filepath.FromSlash(e.rel))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var data []byte
	switch e.kind {
	case kindEmpty:
	case kindSQLite:
		if err := g.sqlite(path, e.rel); err != nil {
			return fmt.Errorf("%s: %w", e.rel, err)
		}
	case kindPlist:
		data = g.plist(e.size)
	case kindJPEG:
		data = g.jpeg(e.size)
	case kindText:
		data = g.text(e.size)
	default:
		data = g.bytes(int(e.size))
	}
	if e.kind != kindSQLite {
		mode := os.FileMode(0o600)
		if g.rng.IntN(100) < 38 {
			mode = 0o644
		}
		if err := os.WriteFile(path, data, mode); err != nil {
			return err
		}
	}
	t := g.base.Add(-time.Duration(g.rng.Int64N(int64(400 * 24 * time.Hour))))
	return os.Chtimes(path, t, t)
}

func (g *generator) bytes(n int) []byte {
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := g.rng.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// jpeg returns bytes that start and end like a JPEG/JFIF file.
func (g *generator) jpeg(n int64) []byte {
	head := []byte{0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, 'J', 'F', 'I', 'F', 0x00, 0x01, 0x01, 0x00, 0x00, 0x48, 0x00, 0x48, 0x00, 0x00}
	body := g.bytes(int(max(n-int64(len(head))-2, 0)))
	out := append(head, body...)
	return append(out, 0xFF, 0xD9)
}

var words = strings.Fields("the quick brown fox jumps over a lazy dog while backups run at night and photos sync to the phone")

func (g *generator) text(n int64) []byte {
	var b bytes.Buffer
	for int64(b.Len()) < n {
		b.WriteString(words[g.rng.IntN(len(words))])
		if g.rng.IntN(12) == 0 {
			b.WriteByte('\n')
		} else {
			b.WriteByte(' ')
		}
	}
	return b.Bytes()[:n]
}

// plist returns a binary plist of roughly n bytes, like the preference files
// of a real phone.
func (g *generator) plist(n int64) []byte {
	d := map[string]any{
		"Version":          g.rng.IntN(20),
		"LastUpdate":       g.base.Add(-time.Duration(g.rng.IntN(1000)) * time.Hour),
		"Enabled":          g.rng.IntN(2) == 1,
		"ProductVersion":   g.prof.ProductVersion,
		"SBHomeScreenIcon": fmt.Sprintf("icon-%d", g.rng.IntN(100)),
	}
	if n > 200 {
		d["Payload"] = g.bytes(int(n - 200))
	}
	b, err := plist.Marshal(d, plist.BinaryFormat)
	if err != nil {
		return nil // plist of plain values cannot fail to encode
	}
	return b
}

// sqlite writes a small real SQLite database with a table or two.
func (g *generator) sqlite(path, rel string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(DELETE)")
	if err != nil {
		return err
	}
	defer db.Close()
	table := strings.TrimSuffix(filepath.Base(rel), filepath.Ext(rel))
	table = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, table)
	stmts := []string{
		fmt.Sprintf("CREATE TABLE %s (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT, date INTEGER, text TEXT, data BLOB)", table),
		"CREATE TABLE _SqliteDatabaseProperties (key TEXT, value TEXT, UNIQUE(key))",
		"INSERT INTO _SqliteDatabaseProperties VALUES ('_ClientVersion', '" + g.prof.BuildVersion + "')",
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	for _, s := range stmts {
		if _, err := tx.Exec(s); err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	rows := 20 + g.rng.IntN(80)
	for i := 0; i < rows; i++ {
		_, err := tx.Exec(fmt.Sprintf("INSERT INTO %s (guid, date, text, data) VALUES (?, ?, ?, ?)", table),
			fmt.Sprintf("%08X-%04X-%04X", g.rng.Uint32(), g.rng.IntN(1<<16), g.rng.IntN(1<<16)),
			g.base.Unix()-int64(g.rng.IntN(1e7)), string(g.text(int64(20+g.rng.IntN(100)))), g.bytes(g.rng.IntN(200)))
		if err != nil {
			_ = tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	return os.Chmod(path, 0o644)
}
