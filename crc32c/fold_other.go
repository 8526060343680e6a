//go:build !amd64

package crc32c

const folding = false

func fold512(p []byte, crc uint32, k *foldConsts) uint32 { panic("crc32c: no folding") }
