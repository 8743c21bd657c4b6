//go:build !amd64 || purego

package keybag

import "crypto/cipher"

// newFastCBCDecrypter has no fast path on this platform; callers use
// crypto/cipher.
func newFastCBCDecrypter(key, iv []byte) cipher.BlockMode { return nil }
