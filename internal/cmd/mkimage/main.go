// Command mkimage builds arr's container image without a Docker daemon:
// the static arr binary for each platform, CA certificates, a non-root
// user (uid 65532) and /data owned by it, written as an OCI image layout
// (a directory crane, skopeo and podman read; `crane push DIR REF` pushes
// its index) and as a docker-archive tarball of one platform (`docker
// load`, `podman load`).
//
//	go run ./internal/cmd/mkimage -platforms linux/amd64,linux/arm64 \
//	    -out dist/arr-image -tar dist/arr-image.tar -version v1.2.3 -revision $(git rev-parse HEAD)
//
// Every timestamp in the image is -epoch (default $SOURCE_DATE_EPOCH, else
// 0), so two builds of the same source with the same Go toolchain and CA
// bundle give the same digests. `make image` runs it.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mkimage:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "dist/arr-image", "OCI image layout directory to write (replaced)")
	tarPath := fs.String("tar", "dist/arr-image.tar", "docker-archive tarball of -tar-platform's image to write (empty: none)")
	tarPlatform := fs.String("tar-platform", "linux/amd64", "the platform whose image goes into -tar")
	tag := fs.String("tag", "", "image reference in the tarball and ref.name in the layout (default arr:{version})")
	platforms := fs.String("platforms", "linux/amd64", "comma-separated os/arch of the images")
	bins := fs.String("bin", "", "platform=path,…: use these arr binaries instead of building ./cmd/arr")
	pkg := fs.String("pkg", "./cmd/arr", "package to build")
	ca := fs.String("ca", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle to install at /etc/ssl/certs/ca-certificates.crt")
	version := fs.String("version", "devel", "org.opencontainers.image.version")
	revision := fs.String("revision", "", "org.opencontainers.image.revision (the git commit)")
	source := fs.String("source", "https://github.com/arrhq/arr", "org.opencontainers.image.source")
	epochDefault := os.Getenv("SOURCE_DATE_EPOCH")
	if epochDefault == "" {
		epochDefault = "0"
	}
	epoch := fs.String("epoch", epochDefault, "Unix time of every timestamp in the image (default $SOURCE_DATE_EPOCH, else 0)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("mkimage takes no arguments, got %q", fs.Args())
	}
	secs, err := strconv.ParseInt(*epoch, 10, 64)
	if err != nil || secs < 0 {
		return fmt.Errorf("-epoch %q: want a Unix time in seconds", *epoch)
	}
	caPEM, err := os.ReadFile(*ca)
	if err != nil {
		return fmt.Errorf("-ca: %w", err)
	}
	if *tag == "" {
		*tag = "arr:" + *version
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("-tag %q: %w", *tag, err)
	}
	ps, err := ParsePlatforms(*platforms)
	if err != nil {
		return fmt.Errorf("-platforms: %w", err)
	}
	given, err := parseBins(*bins)
	if err != nil {
		return fmt.Errorf("-bin: %w", err)
	}
	tmp, err := os.MkdirTemp("", "mkimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	var binaries []Binary
	for _, p := range ps {
		path, ok := given[p.String()]
		if !ok {
			fmt.Fprintf(stderr, "building %s for %s\n", *pkg, p)
			if path, err = BuildArr(*pkg, tmp, p); err != nil {
				return err
			}
		}
		binaries = append(binaries, Binary{Platform: p, Path: path})
	}
	idx, err := Build(binaries, Options{CACerts: caPEM, Created: time.Unix(secs, 0),
		Version: *version, Revision: *revision, Source: *source})
	if err != nil {
		return err
	}
	if err := WriteLayout(*out, idx, ref.TagStr()); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: index %s\n", *out, d)
	if *tarPath != "" {
		tp, err := v1.ParsePlatform(*tarPlatform)
		if err != nil {
			return fmt.Errorf("-tar-platform: %w", err)
		}
		img, err := PlatformImage(idx, *tp)
		if err != nil {
			return fmt.Errorf("-tar-platform: %w", err)
		}
		if err := os.MkdirAll(filepath.Dir(*tarPath), 0o755); err != nil {
			return err
		}
		if err := tarball.WriteToFile(*tarPath, ref, img); err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: %s image %s, tagged %s\n", *tarPath, tp, d, ref)
	}
	return nil
}

// WriteLayout replaces dir with an OCI image layout whose index.json names
// idx (ref.name annotation: tag).
func WriteLayout(dir string, idx v1.ImageIndex, tag string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendIndex(idx, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag}))
}

// PlatformImage is idx's image for platform p (the variant is compared
// only when p has one).
func PlatformImage(idx v1.ImageIndex, p v1.Platform) (v1.Image, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range m.Manifests {
		if d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture &&
			(p.Variant == "" || d.Platform.Variant == p.Variant) {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("the image has no %s platform", p)
}

func parseBins(s string) (map[string]string, error) {
	m := map[string]string{}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		plat, path, ok := strings.Cut(f, "=")
		if !ok || path == "" {
			return nil, fmt.Errorf("%q: want platform=path", f)
		}
		ps, err := ParsePlatforms(plat)
		if err != nil {
			return nil, err
		}
		m[ps[0].String()] = path
	}
	return m, nil
}
