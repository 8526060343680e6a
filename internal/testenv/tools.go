package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// NeedTool skips t (fails it in CI) unless tool is on the PATH, saying
// which package installs it.
func NeedTool(t testing.TB, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		Missing(t, "%s not installed: apt-get install %s", tool, pkg)
	}
}

// RunTool runs a command with a deadline in a scratch directory and
// returns its combined output.
func RunTool(t testing.TB, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = t.TempDir() // fio leaves verify state files in its cwd
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// MustRunTool is RunTool that fails t if the command fails.
func MustRunTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := RunTool(t, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// NBDInfoOutput is what nbdinfo --json says of an NBD server's exports.
type NBDInfoOutput struct {
	Protocol string `json:"protocol"`
	Exports  []struct {
		Name string `json:"export-name"`
		// Description is NBD_INFO_DESCRIPTION (nbdinfo --list).
		Description  string `json:"description"`
		Size         int64  `json:"export-size"`
		ReadOnly     bool   `json:"is_read_only"`
		CanFlush     bool   `json:"can_flush"`
		CanFUA       bool   `json:"can_fua"`
		CanTrim      bool   `json:"can_trim"`
		CanZero      bool   `json:"can_zero"`
		CanMultiConn bool   `json:"can_multi_conn"`
		MaxBlockSize int64  `json:"block_size_maximum"`
	} `json:"exports"`
}

// NBDInfo runs nbdinfo --json with args and decodes what it says.
func NBDInfo(t testing.TB, args ...string) NBDInfoOutput {
	t.Helper()
	out := MustRunTool(t, "nbdinfo", append([]string{"--json"}, args...)...)
	var info NBDInfoOutput
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("nbdinfo output is not JSON: %v\n%s", err, out)
	}
	return info
}

// SHA256File returns the SHA-256 of the file at path.
func SHA256File(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
