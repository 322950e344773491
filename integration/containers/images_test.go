package containers

import (
	"debug/elf"
	"path/filepath"
	"strings"
	"testing"
)

// The Dockerfile's default and hamgr-node targets, as build-images.sh
// tags them.
const (
	userImage    = "local/hamgr:dev"
	hamgrNodeImg = "local/hamgr-node:dev"
)

// TestImages checks what the Dockerfile promises of the images
// build-images.sh built: static binaries, non-root users, PostgreSQL 15 in
// the node image.
func TestImages(t *testing.T) {
	requireEngine(t)
	for _, img := range []string{userImage, hamgrNodeImg} {
		if _, err := dockerErr("image", "inspect", img); err != nil {
			t.Skipf("image %s not available (%v); build the images with %s", img, err, buildScript)
		}
	}
	if out := docker(t, "run", "--rm", userImage, "version"); !strings.HasPrefix(out, "hamgr ") {
		t.Errorf("%s version = %q, want hamgr <version>", userImage, out)
	}
	if out := docker(t, "run", "--rm", "--entrypoint", "id", userImage, "-un"); out != "hamgr" {
		t.Errorf("%s runs as %q, want hamgr", userImage, out)
	}
	out := docker(t, "run", "--rm", "--entrypoint", "sh", hamgrNodeImg, "-c",
		"id -un; /usr/lib/postgresql/15/bin/postgres --version; hamgrctl --help >/dev/null && echo hamgrctl ok")
	for _, want := range []string{"postgres\n", "(PostgreSQL) 15.", "hamgrctl ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("%s: output %q lacks %q", hamgrNodeImg, out, want)
		}
	}
	// Static: no program interpreter (dynamic loader) in either binary.
	ctr := docker(t, "create", userImage)
	t.Cleanup(func() { _, _ = dockerErr("rm", ctr) })
	dir := t.TempDir()
	for _, bin := range []string{"hamgr", "hamgrctl"} {
		dst := filepath.Join(dir, bin)
		docker(t, "cp", ctr+":/usr/local/bin/"+bin, dst)
		f, err := elf.Open(dst)
		if err != nil {
			t.Fatalf("%s from %s: %v", bin, userImage, err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s in %s is dynamically linked (has a program interpreter)", bin, userImage)
			}
		}
		f.Close()
	}
}
