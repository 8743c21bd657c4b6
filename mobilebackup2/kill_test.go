package mobilebackup2_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/ibackup/ibackup/fakedevice/backupagent"
	"github.com/ibackup/ibackup/mobilebackup2"
	"github.com/ibackup/ibackup/mobilebackup2/snapshot"
)

const killEnv = "IBACKUP_TEST_KILL_CHILD" // "<content>|<dir>|<work>"

// TestKillChild is the backup process of TestSIGKILLMidBackup; it does
// nothing unless started by it.
func TestKillChild(t *testing.T) {
	spec := os.Getenv(killEnv)
	if spec == "" {
		t.Skip("helper process")
	}
	parts := strings.Split(spec, "|")
	block := make(chan struct{})
	cfg := backupagent.Config{ContentDir: parts[0], WorkDir: parts[2], Faults: backupagent.Faults{OnFile: func(n int) {
		if n == 2 {
			fmt.Println("MIDBACKUP")
			<-block // wait for SIGKILL
		}
	}}}
	host, dev := pipe(t)
	go func() { _ = backupagent.Serve(context.Background(), dev, cfg) }()
	c := mobilebackup2.NewClient(host)
	_, err := c.Handshake(context.Background())
	require.NoError(t, err)
	_, _ = c.Backup(context.Background(), mobilebackup2.BackupOptions{Dir: parts[1], Target: testUDID, Info: infoInput()})
	t.Fatal("backup returned although the phone never finished")
}

func TestSIGKILLMidBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	content, dir := t.TempDir(), t.TempDir()
	writeTree(t, content, map[string]string{"HomeDomain/a": "one", "HomeDomain/b": "two"})
	cfg := backupagent.Config{ContentDir: content, WorkDir: t.TempDir()}
	good, err, _ := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	before := treeSnapshot(t, filepath.Join(dir, testUDID)+"/")
	want := contentOf(t, content)

	writeTree(t, content, map[string]string{"HomeDomain/a": "changed", "HomeDomain/c": "three", "HomeDomain/d": "four"})
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnv+"="+content+"|"+dir+"|"+t.TempDir())
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(out)
	seen := false
	for sc.Scan() {
		if strings.Contains(sc.Text(), "MIDBACKUP") {
			seen = true
			break
		}
	}
	require.True(t, seen, "child never reached the middle of the backup")
	require.NoError(t, cmd.Process.Kill()) // SIGKILL
	_ = cmd.Wait()

	// The last good backup is exactly as it was and still verifies; the
	// killed run's working copy is still there until the next run.
	assert.Equal(t, before, treeSnapshot(t, filepath.Join(dir, testUDID)+"/"))
	assert.Equal(t, want, decode(t, filepath.Join(dir, testUDID)))
	assert.Empty(t, verifyRecord(t, good.Version, testUDID))
	works, _ := filepath.Glob(filepath.Join(dir, ".ibackup", testUDID, "work-*"))
	assert.Len(t, works, 1)

	res, err, aerr := backupOnce(t, cfg, opts(dir))
	require.NoError(t, err)
	require.NoError(t, aerr)
	assert.Equal(t, contentOf(t, content), decode(t, filepath.Join(dir, testUDID)))
	works, _ = filepath.Glob(filepath.Join(dir, ".ibackup", testUDID, "work-*"))
	assert.Empty(t, works)
	st, err := snapshot.Open(dir, testUDID)
	require.NoError(t, err)
	defer st.Close()
	vs, err := st.Versions()
	require.NoError(t, err)
	assert.Len(t, vs, 2)
	assert.Equal(t, res.Version.ID, vs[1].ID)
}
