package mobilebackup2_test

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/ibackup/ibackup/mobilebackup2"
)

// Example shows how the CLI drives a backup: conn comes from
// lockdown.Client.StartService(ctx, dialer, "com.apple.mobilebackup2", true),
// info from lockdown GetValue, installation_proxy and AFC.
func Example() {
	run := func(ctx context.Context, conn net.Conn, dir, udid string, info *mobilebackup2.InfoInput) error {
		c := mobilebackup2.NewClient(conn)
		defer c.Close()
		if _, err := c.Handshake(ctx); err != nil {
			return err
		}
		res, err := c.Backup(ctx, mobilebackup2.BackupOptions{
			Dir: dir, Target: udid, Keep: 3, Info: info,
			Progress: func(e mobilebackup2.Event) {
				fmt.Printf("%s %d files %d/%d bytes %s\n", e.Phase, e.Files, e.Bytes, e.TotalBytes, e.CurrentFile)
			},
		})
		var ve *mobilebackup2.VerifyError
		switch {
		case errors.As(err, &ve):
			for _, p := range ve.Problems {
				fmt.Println("bad file:", p)
			}
			return err
		case err != nil:
			fmt.Println(err, "—", mobilebackup2.Hint(err))
			return err
		}
		fmt.Println("backup", res.Version.ID, "full:", res.FullBackup, "files:", res.FilesVerified)
		return nil
	}
	_ = run
}
