//go:build !linux

package schedpolicy

// batch does nothing where the batch policy does not exist.
func batch() (int, error) { return 0, nil }
