package config

import (
	"fmt"
	"strings"
	"testing"
)

// TestDefaultSidefileLimitFitsAnyNumberOfSubsystems: a session of 8 or more
// subsystems that leaves sidefile_limit out is refused for the default it
// never wrote: "primary.sidefile_limit: 256MiB is too large for 8
// subsystems", without the value that would fit. The default is one the
// config accepts: at most MaxSidefileTotal over the subsystems.
func TestDefaultSidefileLimitFitsAnyNumberOfSubsystems(t *testing.T) {
	for _, n := range []int{1, 7, 8, 128} {
		var b strings.Builder
		b.WriteString("session = \"many\"\n[primary]\nnbd = \"127.0.0.1:10809\"\nsecondary = \"127.0.0.1:7402\"\n")
		for i := range n {
			fmt.Fprintf(&b, "[[primary.subsystem]]\nid = \"ss%d\"\n[[primary.subsystem.volume]]\nname = \"v%d\"\npath = \"v%d.img\"\nsize = \"1GiB\"\n", i, i, i)
		}
		c, err := Parse([]byte(b.String()), t.TempDir())
		if err != nil {
			t.Errorf("%d subsystems, sidefile_limit left out: %v", n, err)
			continue
		}
		if total := c.Primary.SidefileLimit * Size(n); total > MaxSidefileTotal {
			t.Errorf("%d subsystems: default sidefile_limit %s, %s together", n, c.Primary.SidefileLimit, total)
		}
	}
}
