package main

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const testCA = "/etc/ssl/certs/ca-certificates.crt"

// TestImage builds arr and its image the way make image does, checks that
// a second build of the same binary gives the same digests, reads the
// image back from the OCI layout, unpacks its layers, checks its config,
// and runs its entrypoint with its Cmd (the data directory and listen
// address pointed at a temporary directory and a free loopback port: the
// test cannot chroot) through the seed's submit and poll.
func TestImage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the image's binary is a linux one, run from the unpacked root")
	}
	caPEM, err := os.ReadFile(testCA)
	if err != nil {
		t.Skipf("no CA bundle to put in the image: %v", err)
	}
	plat := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	if plat.Architecture == "arm64" {
		plat.Variant = "v8"
	}
	bin, err := BuildArr("github.com/arrhq/arr/cmd/arr", t.TempDir(), plat)
	if err != nil {
		t.Fatal(err)
	}

	// Two builds from copies of the binary with other paths and times.
	var digests []v1.Hash
	var tarSums [][32]byte
	var dirs []string
	var tarPath string
	for i := range 2 {
		cp := filepath.Join(t.TempDir(), "arr")
		copyFile(t, bin, cp, 0o700+os.FileMode(i*0o55))
		if err := os.Chtimes(cp, time.Now(), time.Now().Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
		dir, tp := filepath.Join(t.TempDir(), "layout"), filepath.Join(t.TempDir(), "arr.tar")
		if err := run([]string{"-bin", plat.String() + "=" + cp, "-platforms", plat.String(), "-tar-platform", plat.String(),
			"-out", dir, "-tar", tp, "-ca", testCA, "-epoch", "1700000000", "-tag", "arr:v9.8.7",
			"-version", "v9.8.7", "-revision", "0123abcd"}, io.Discard, io.Discard); err != nil {
			t.Fatal(err)
		}
		tb, err := os.ReadFile(tp)
		if err != nil {
			t.Fatal(err)
		}
		lp, err := layout.ImageIndexFromPath(dir)
		if err != nil {
			t.Fatal(err)
		}
		top, err := lp.IndexManifest()
		if err != nil || len(top.Manifests) != 1 {
			t.Fatalf("index.json: %v %v", top, err)
		}
		d := top.Manifests[0].Digest
		digests, tarSums, dirs = append(digests, d), append(tarSums, sha256.Sum256(tb)), append(dirs, dir)
		tarPath = tp
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds of the same binary: index digests %s and %s", digests[0], digests[1])
	}
	if tarSums[0] != tarSums[1] {
		t.Errorf("two builds of the same binary: docker-archive tarballs differ (sha256 %x, %x)", tarSums[0], tarSums[1])
	}

	// Read the image back from the layout on disk.
	lp, err := layout.ImageIndexFromPath(dirs[0])
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 || top.Manifests[0].MediaType != types.OCIImageIndex ||
		top.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "v9.8.7" || top.Manifests[0].Digest != digests[0] {
		t.Fatalf("index.json: %+v, want one image index %s named v9.8.7", top.Manifests, digests[0])
	}
	idx, err := lp.ImageIndex(digests[0])
	if err != nil {
		t.Fatal(err)
	}
	img, err := PlatformImage(idx, plat)
	if err != nil {
		t.Fatal(err)
	}
	// The docker-archive holds the same image: its config and layers.
	timg, err := tarball.ImageFromPath(tarPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(v1.Image) (any, error){
		func(i v1.Image) (any, error) { return i.ConfigName() },
		func(i v1.Image) (any, error) {
			m, err := i.Manifest()
			if err != nil {
				return nil, err
			}
			var ds []string
			for _, l := range m.Layers {
				ds = append(ds, fmt.Sprint(l.Digest, " ", l.Size))
			}
			return strings.Join(ds, ", "), nil
		},
	} {
		a, err1 := f(img)
		b, err2 := f(timg)
		if err1 != nil || err2 != nil || a != b {
			t.Errorf("the layout has %v (%v), the tarball %v (%v)", a, err1, b, err2)
		}
	}
	if mt, _ := img.MediaType(); mt != types.OCIManifestSchema1 {
		t.Errorf("manifest media type %s", mt)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cf.Config
	if !slices.Equal(c.Entrypoint, []string{"/arr"}) || c.User != "65532:65532" || c.WorkingDir != "/data" ||
		cf.OS != "linux" || cf.Architecture != runtime.GOARCH || !cf.Created.Time.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("config: entrypoint %q user %q workdir %q os/arch %s/%s created %s", c.Entrypoint, c.User, c.WorkingDir, cf.OS, cf.Architecture, cf.Created)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || len(c.ExposedPorts) != 1 {
		t.Errorf("exposed ports %v, want 8080/tcp", c.ExposedPorts)
	}
	if _, ok := c.Volumes["/data"]; !ok {
		t.Errorf("volumes %v, want /data", c.Volumes)
	}
	if !slices.Contains(c.Env, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt") {
		t.Errorf("env %q", c.Env)
	}
	for k, v := range map[string]string{"org.opencontainers.image.source": "https://github.com/arrhq/arr",
		"org.opencontainers.image.version": "v9.8.7", "org.opencontainers.image.revision": "0123abcd"} {
		if c.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, c.Labels[k], v)
		}
	}
	if !slices.Equal(c.Cmd, []string{"serve", "-addr", "0.0.0.0:8080", "-data", "/data", "-insecure-no-auth"}) {
		t.Errorf("cmd %q", c.Cmd)
	}
	for _, h := range cf.History {
		if !h.Created.Time.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("history entry created %s", h.Created)
		}
	}

	// Unpack the layers in order into a root.
	root := t.TempDir()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 2 {
		t.Fatalf("%d layers, want the base and the binary", len(layers))
	}
	hdrs := map[string]*tar.Header{}
	for _, l := range layers {
		if mt, _ := l.MediaType(); mt != types.OCILayer {
			t.Errorf("layer media type %s", mt)
		}
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		err = unpack(root, rc, hdrs)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]struct {
		typ  byte
		mode int64
		uid  int
	}{"arr": {tar.TypeReg, 0o755, 0}, "data/": {tar.TypeDir, 0o755, 65532}, "tmp/": {tar.TypeDir, 0o1777, 0},
		"etc/passwd": {tar.TypeReg, 0o644, 0}, "etc/ssl/certs/ca-certificates.crt": {tar.TypeReg, 0o644, 0}} {
		h := hdrs[name]
		if h == nil {
			t.Errorf("%s: not in the image", name)
			continue
		}
		if h.Typeflag != want.typ || h.Mode != want.mode || h.Uid != want.uid || h.Gid != want.uid || !h.ModTime.Equal(time.Unix(1700000000, 0)) {
			t.Errorf("%s: type %c mode %o uid %d gid %d mtime %s; want type %c mode %o uid=gid=%d", name, h.Typeflag, h.Mode, h.Uid, h.Gid, h.ModTime, want.typ, want.mode, want.uid)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(root, "etc/passwd"))
	if err != nil || !strings.Contains(string(passwd), "nonroot:x:65532:65532:") {
		t.Errorf("etc/passwd: %q %v", passwd, err)
	}
	unpackedCA := filepath.Join(root, "etc/ssl/certs/ca-certificates.crt")
	if b, err := os.ReadFile(unpackedCA); err != nil || !bytes.Equal(b, caPEM) || !x509.NewCertPool().AppendCertsFromPEM(b) {
		t.Errorf("the unpacked CA bundle is not the one given (%v)", err)
	}

	// Run the entrypoint with the image's Cmd plus overrides.
	addr := freeAddr(t)
	args := append(slices.Clone(c.Cmd), "-addr", addr, "-data", filepath.Join(t.TempDir(), "data"), "-log-level", "warn")
	cmd := exec.Command(filepath.Join(root, strings.TrimPrefix(c.Entrypoint[0], "/")), args...)
	cmd.Dir = root
	cmd.Env = append(slices.Clone(c.Env), "SSL_CERT_FILE="+unpackedCA, "HOME="+t.TempDir())
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("arr exited with %v after SIGTERM\n%s", err, log.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("arr did not exit after SIGTERM\n%s", log.String())
		}
	}()
	waitReady(t, addr, &log)

	// The seed's curl: POST the acceptor, follow Location until done.
	body := `{ "id": "1234", "customername": "Contoso" }`
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/asyncprocessingworkacceptor", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusAccepted || !strings.HasPrefix(loc, "http://"+addr+"/api/RequestStatus/") {
		t.Fatalf("submit: %s, Location %q; want 202 with the status URL\n%s", res.Status, loc, log.String())
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode == http.StatusOK {
			if string(got) != body {
				t.Errorf("result %q, want the submitted body %q", got, body)
			}
			break
		}
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("polling %s: %s %s", loc, res.Status, got)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the operation did not finish in 30 s\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// unpack applies one layer tar to root as a container runtime would:
// entries in order, ".wh.NAME" deletes NAME of lower layers,
// ".wh..wh..opq" empties its directory of lower layers' entries. The
// headers it applied are recorded in hdrs by cleaned name ("dir/" for
// directories), a later layer's replacing an earlier one's.
func unpack(root string, r io.Reader, hdrs map[string]*tar.Header) error {
	tr := tar.NewReader(r)
	thisLayer := map[string]bool{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "/"))
		if name == "." || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("layer entry %q escapes the root", h.Name)
		}
		dst := filepath.Join(root, filepath.FromSlash(name))
		dir, base := path.Split(name)
		switch {
		case base == ".wh..wh..opq":
			ents, err := os.ReadDir(filepath.Join(root, filepath.FromSlash(dir)))
			if err != nil && !os.IsNotExist(err) {
				return err
			}
			for _, e := range ents {
				if !thisLayer[dir+e.Name()] {
					if err := os.RemoveAll(filepath.Join(root, filepath.FromSlash(dir), e.Name())); err != nil {
						return err
					}
					forget(hdrs, dir+e.Name())
				}
			}
			continue
		case strings.HasPrefix(base, ".wh."):
			victim := dir + strings.TrimPrefix(base, ".wh.")
			if err := os.RemoveAll(filepath.Join(root, filepath.FromSlash(victim))); err != nil {
				return err
			}
			forget(hdrs, victim)
			continue
		}
		thisLayer[name] = true
		key := name
		switch h.Typeflag {
		case tar.TypeDir:
			key += "/"
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			_ = os.RemoveAll(dst)
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(h.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("layer entry %q: type %c not unpacked by this test", h.Name, h.Typeflag)
		}
		hdrs[key] = h
	}
}

// forget drops name and everything under it from hdrs.
func forget(hdrs map[string]*tar.Header, name string) {
	for k := range hdrs {
		if k == name || k == name+"/" || strings.HasPrefix(k, name+"/") {
			delete(hdrs, k)
		}
	}
}

// TestUnpackWhiteouts: the test's unpacker honours both kinds of whiteout,
// so an image with them would be unpacked as a runtime would.
func TestUnpackWhiteouts(t *testing.T) {
	mk := func(entries ...string) io.Reader {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range entries {
			h := &tar.Header{Name: e, Mode: 0o644, Typeflag: tar.TypeReg}
			if strings.HasSuffix(e, "/") {
				h.Typeflag, h.Mode = tar.TypeDir, 0o755
			}
			if err := tw.WriteHeader(h); err != nil {
				t.Fatal(err)
			}
		}
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
		return &buf
	}
	root, hdrs := t.TempDir(), map[string]*tar.Header{}
	for _, l := range []io.Reader{
		mk("a/", "a/x", "a/y", "b/", "b/z", "c"),
		mk("a/.wh..wh..opq", "a/new", "b/.wh.z", ".wh.c"),
	} {
		if err := unpack(root, l, hdrs); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != root {
			rel, _ := filepath.Rel(root, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "a/new", "b"}; !slices.Equal(got, want) {
		t.Errorf("unpacked %q, want %q", got, want)
	}
	if len(hdrs) != 3 || hdrs["a/new"] == nil || hdrs["a/x"] != nil || hdrs["c"] != nil {
		t.Errorf("headers kept: %v", keys(hdrs))
	}
	if err := unpack(t.TempDir(), mk("../evil"), map[string]*tar.Header{}); err == nil {
		t.Error("an entry outside the root was unpacked")
	}
}

func keys(m map[string]*tar.Header) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// TestBadInput: mkimage says what is wrong instead of writing an image.
func TestBadInput(t *testing.T) {
	noCert := filepath.Join(t.TempDir(), "empty.pem")
	if err := os.WriteFile(noCert, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fakeBin := filepath.Join(t.TempDir(), "arr")
	if err := os.WriteFile(fakeBin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-platforms", "linux"}, "-platforms"},
		{[]string{"-platforms", ""}, "no platform"},
		{[]string{"-platforms", "windows/amd64", "-tar", ""}, "only linux"},
		{[]string{"-bin", "linux/amd64"}, "want platform=path"},
		{[]string{"-epoch", "yesterday"}, "-epoch"},
		{[]string{"-tag", "Not A Tag"}, "-tag"},
		{[]string{"-ca", filepath.Join(t.TempDir(), "missing.pem")}, "-ca"},
		{[]string{"-ca", noCert, "-bin", "linux/amd64=" + fakeBin}, "no PEM certificate"},
		{[]string{"-bin", "linux/amd64=" + fakeBin, "-tar-platform", "linux/s390x"}, "no linux/s390x platform"},
		{[]string{"stray"}, "no arguments"},
	} {
		args := append([]string{"-out", out, "-tar", filepath.Join(out, "x.tar")}, c.args...)
		err := run(args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("mkimage %q: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	if _, err := Build([]Binary{{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Path: fakeBin},
		{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Path: fakeBin}}, Options{CACerts: mustRead(t, testCA)}); err == nil ||
		!strings.Contains(err.Error(), "twice") {
		t.Errorf("the same platform twice: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Skip(err)
	}
	return b
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitReady(t *testing.T, addr string, log *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("arr did not become ready: %v\n%s", err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a child's output, readable while it writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
