package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJournalsInOneDirectoryThroughALink: two sites on one machine may not
// keep their journals in one directory, nor share one journal, however
// their paths are written: through a symbolic link to the directory, or
// with "..", before or after the journals exist. The file system, not the
// text, says which directory a path names.
func TestJournalsInOneDirectoryThroughALink(t *testing.T) {
	for _, tc := range []struct {
		name      string
		primary   string // relative to the config's directory; link names a link to real
		secondary string
		exist     bool // the journal directories exist already
		field     string
		want      string
	}{
		{"link to the directory", "link/j1", "real/j2", false, "primary.journal", "in the directory of secondary.journal"},
		{"link, journals made", "link/j1", "real/j2", true, "primary.journal", "in the directory of secondary.journal"},
		{"dot dot", "other/../real/j1", "real/j2", false, "primary.journal", "in the directory of secondary.journal"},
		{"dot dot through the link", "link/../real/j1", "real/j2", false, "primary.journal", "in the directory of secondary.journal"},
		{"one journal through the link", "link/j", "real/j", true, "", "also"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := valid(t)
			for _, d := range []string{"real", "other"} {
				if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.Symlink(filepath.Join(c.Dir, "real"), filepath.Join(c.Dir, "link")); err != nil {
				t.Fatal(err)
			}
			if tc.exist {
				for _, j := range []string{tc.primary, tc.secondary} {
					if err := os.MkdirAll(filepath.Join(c.Dir, j), 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			c.Primary.Listen, c.Primary.Journal, c.Secondary.Journal = "127.0.0.1:7404", tc.primary, tc.secondary
			err := c.Validate()
			if err == nil {
				t.Fatalf("Validate accepted primary.journal %q and secondary.journal %q, one directory through a link", tc.primary, tc.secondary)
			}
			found := false
			for _, line := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(line, tc.field) && strings.Contains(line, tc.want) && strings.Contains(line, "journal") {
					found = true
				}
			}
			if !found {
				t.Fatalf("error lacks a line %q...%q:\n%v", tc.field, tc.want, err)
			}
		})
	}

	// Journals in directories of their own pass, links or not.
	c := valid(t)
	for _, d := range []string{"real/a", "real/b"} {
		if err := os.MkdirAll(filepath.Join(c.Dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(c.Dir, "real"), filepath.Join(c.Dir, "link")); err != nil {
		t.Fatal(err)
	}
	c.Primary.Listen, c.Primary.Journal, c.Secondary.Journal = "127.0.0.1:7404", "link/a/journal", "real/b/journal"
	if err := c.Validate(); err != nil {
		t.Fatalf("journals in directories of their own: %v", err)
	}
}
