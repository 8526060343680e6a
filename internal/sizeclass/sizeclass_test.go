package sizeclass

import "testing"

func TestOf(t *testing.T) {
	for _, c := range []struct{ n, want int }{
		{0, 0}, {1, 0}, {4096, 0}, {4097, 1}, {8192, 1}, {8193, 2}, {1 << 20, 8}, {1<<20 + 1, -1},
	} {
		if got := Of(c.n, 12, 20); got != c.want {
			t.Errorf("Of(%d, 12, 20) = %d, want %d", c.n, got, c.want)
		}
	}
}
