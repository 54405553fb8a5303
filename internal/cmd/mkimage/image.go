package main

import (
	"archive/tar"
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's user, its data directory and what it runs.
const (
	uid     = 65532 // distroless's "nonroot": no name clash with a host's users
	dataDir = "/data"
	caPath  = "/etc/ssl/certs/ca-certificates.crt" // where Go's crypto/x509 looks first on Linux
	port    = "8080"
)

// Cmd is the image's default arguments to /arr: serve on every interface of
// the container, state in the /data volume, and anonymous callers (arr
// refuses a non-loopback address without authentication unless told; see
// docs/auth.md and docs/azure.md). Setting ARR_API_KEYS (or ARR_JWT_ISSUER
// and ARR_JWT_AUDIENCE) turns authentication on whatever these say.
var Cmd = []string{"serve", "-addr", "0.0.0.0:" + port, "-data", dataDir, "-insecure-no-auth"}

// Binary is a static arr binary for one platform.
type Binary struct {
	Platform v1.Platform
	Path     string
}

// Options say what goes into the image besides the binaries.
type Options struct {
	CACerts  []byte    // PEM bundle installed at /etc/ssl/certs/ca-certificates.crt
	Created  time.Time // every timestamp in the image (SOURCE_DATE_EPOCH)
	Version  string    // org.opencontainers.image.version
	Revision string    // org.opencontainers.image.revision
	Source   string    // org.opencontainers.image.source
}

// Build assembles an OCI image index with one image per binary. The result
// depends only on the binaries' bytes and opts: no file's mode, owner or
// modification time on this machine and no clock reading enters it, so
// the same inputs give the same digests.
func Build(bins []Binary, opts Options) (v1.ImageIndex, error) {
	if len(bins) == 0 {
		return nil, fmt.Errorf("no binaries to put in the image")
	}
	if err := checkCACerts(opts.CACerts); err != nil {
		return nil, err
	}
	created := opts.Created.UTC().Truncate(time.Second)
	base, err := layer(baseFiles(opts.CACerts), created)
	if err != nil {
		return nil, err
	}
	labels := map[string]string{
		"org.opencontainers.image.source":   opts.Source,
		"org.opencontainers.image.version":  opts.Version,
		"org.opencontainers.image.revision": opts.Revision,
		"org.opencontainers.image.title":    "arr",
		"org.opencontainers.image.created":  created.Format(time.RFC3339),
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, b := range bins {
		p := b.Platform
		if seen[p.String()] {
			return nil, fmt.Errorf("platform %s given twice", p)
		}
		seen[p.String()] = true
		data, err := os.ReadFile(b.Path)
		if err != nil {
			return nil, err
		}
		binLayer, err := layer([]file{{name: "arr", mode: 0o755, data: data}}, created)
		if err != nil {
			return nil, err
		}
		img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
		img, err = mutate.Append(img,
			mutate.Addendum{Layer: base, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: created},
				CreatedBy: "mkimage: /etc/passwd, /etc/group, " + caPath + ", " + dataDir + " (uid 65532), /tmp"}},
			mutate.Addendum{Layer: binLayer, MediaType: types.OCILayer, History: v1.History{Created: v1.Time{Time: created},
				CreatedBy: "mkimage: /arr (CGO_ENABLED=0 go build -trimpath ./cmd/arr)"}},
		)
		if err != nil {
			return nil, err
		}
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.Created = v1.Time{Time: created}
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		cf.Config = v1.Config{
			Entrypoint:   []string{"/arr"},
			Cmd:          append([]string(nil), Cmd...),
			User:         fmt.Sprintf("%d:%d", uid, uid),
			WorkingDir:   dataDir,
			Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + caPath},
			ExposedPorts: map[string]struct{}{port + "/tcp": {}},
			Volumes:      map[string]struct{}{dataDir: {}},
			Labels:       labels,
			StopSignal:   "SIGTERM",
		}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return idx, nil
}

// checkCACerts refuses a bundle that holds no certificate: an image whose
// TLS to Azure, S3 or a JWKS fails would be found out only when deployed.
func checkCACerts(pem []byte) error {
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("the CA bundle holds no PEM certificate")
	}
	return nil
}

// file is one entry of a layer; a name ending in "/" is a directory.
type file struct {
	name     string
	mode     int64
	uid, gid int
	data     []byte
}

func baseFiles(ca []byte) []file {
	return []file{
		{name: "etc/", mode: 0o755},
		{name: "etc/group", mode: 0o644, data: []byte(fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", uid))},
		{name: "etc/passwd", mode: 0o644, data: []byte(fmt.Sprintf(
			"root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:%s:/sbin/nologin\n", uid, uid, dataDir))},
		{name: "etc/ssl/", mode: 0o755},
		{name: "etc/ssl/certs/", mode: 0o755},
		{name: strings.TrimPrefix(caPath, "/"), mode: 0o644, data: ca},
		{name: strings.TrimPrefix(dataDir, "/") + "/", mode: 0o755, uid: uid, gid: uid},
		{name: "tmp/", mode: 0o1777},
	}
}

// layer writes files into an uncompressed tar with every time set to t,
// and makes an OCI gzip layer of it.
func layer(files []file, t time.Time) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Uid: f.uid, Gid: f.gid, ModTime: t, Format: tar.FormatPAX}
		if strings.HasSuffix(f.name, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	b := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}

// BuildArr builds the static arr binary of package pkg for platform p into
// dir with the go command: CGO_ENABLED=0 and -trimpath, as make build does,
// so that the same source and Go version give the same bytes.
func BuildArr(pkg, dir string, p v1.Platform) (string, error) {
	if p.OS != "linux" {
		return "", fmt.Errorf("platform %s: only linux images are built", p)
	}
	out := filepath.Join(dir, "arr-"+p.OS+"-"+p.Architecture+p.Variant)
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" && p.Variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s for %s: %v\n%s", pkg, p, err, stderr.Bytes())
	}
	return out, nil
}

// ParsePlatforms reads "linux/amd64,linux/arm64" (an arm64 platform gets
// the variant v8, as registries list it).
func ParsePlatforms(s string) ([]v1.Platform, error) {
	var ps []v1.Platform
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := v1.ParsePlatform(f)
		if err != nil {
			return nil, err
		}
		if p.OS == "" || p.Architecture == "" || strings.Contains(f, ":") {
			return nil, fmt.Errorf("platform %q: want os/arch[/variant]", f)
		}
		if p.Architecture == "arm64" && p.Variant == "" {
			p.Variant = "v8"
		}
		ps = append(ps, *p)
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("no platform given")
	}
	return ps, nil
}
