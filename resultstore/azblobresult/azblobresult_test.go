package azblobresult

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/internal/azuritetest"
	"github.com/arrhq/arr/resultstore"
	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/resultstoretest"
)

// testbed is a fresh container in Azurite, deleted when the test ends,
// and the URL and options that open a store on it.
type testbed struct {
	srv       *azuritetest.Server
	container string
	url       string
	opts      Options
	svc       *service.Client
}

func newTestbed(t *testing.T, params ...string) *testbed {
	t.Helper()
	srv := azuritetest.Start(t)
	co := srv.ClientOptions()
	svc, err := service.NewClient(srv.BlobURL()+"/", azuritetest.Credential(), &service.ClientOptions{ClientOptions: co})
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "arr-test-" + hex.EncodeToString(b[:])
	if _, err := svc.CreateContainer(t.Context(), name, nil); err != nil {
		t.Fatalf("creating container %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := svc.DeleteContainer(ctx, name, nil); err != nil {
			t.Errorf("deleting container %s: %v", name, err)
		}
	})
	q := url.Values{"endpoint": {srv.BlobURL()}}
	for i := 0; i+1 < len(params); i += 2 {
		q.Set(params[i], params[i+1])
	}
	return &testbed{
		srv: srv, container: name, svc: svc,
		url:  (&url.URL{Scheme: Scheme, Host: name, RawQuery: q.Encode()}).String(),
		opts: Options{Credential: azuritetest.Credential(), ClientOptions: &co},
	}
}

func (tb *testbed) open(t testing.TB, opts ...func(*Options)) *Store {
	t.Helper()
	o := tb.opts
	for _, f := range opts {
		f(&o)
	}
	s, err := Open(context.Background(), tb.url, o)
	if err != nil {
		t.Fatalf("Open(%q): %v", tb.url, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestConformance runs the result store suite against Azurite, in a
// container of its own, with and without a prefix.
func TestConformance(t *testing.T) {
	for _, prefix := range []string{"", "conformance/"} {
		name := "ContainerRoot"
		if prefix != "" {
			name = "Prefixed"
		}
		t.Run(name, func(t *testing.T) {
			tb := newTestbed(t, "prefix", prefix)
			resultstoretest.RunConformanceTests(t, resultstoretest.Harness{
				Open: func(t *testing.T) driver.Store {
					s, err := Open(t.Context(), tb.url, tb.opts)
					if err != nil {
						t.Fatal(err)
					}
					return s
				},
			})
		})
	}
}

func TestOpenURL(t *testing.T) {
	cred := azuritetest.Credential()
	good := map[string]string{
		"azblob://results?account=myaccount":                                   "https://myaccount.blob.core.windows.net/results/p%20q/k",
		"azblob://results?account=myaccount&prefix=p+q/":                       "https://myaccount.blob.core.windows.net/results/p%20q/p%20q/k",
		"azblob://abc?endpoint=https://devstoreaccount1.blob.localhost:10000/": "https://devstoreaccount1.blob.localhost:10000/abc/p%20q/k",
	}
	for raw, want := range good {
		s, err := Open(t.Context(), raw, Options{Credential: cred})
		if err != nil {
			t.Errorf("Open(%q): %v", raw, err)
			continue
		}
		if got := s.BlobURL("p q/k"); got != want && !strings.Contains(raw, "prefix") {
			t.Errorf("Open(%q).BlobURL = %s, want %s", raw, got, want)
		}
		if got := s.BlobURL("p q/k"); strings.Contains(raw, "prefix") && got != want {
			t.Errorf("Open(%q).BlobURL = %s, want %s", raw, got, want)
		}
	}
	bad := []string{
		"azblob://results", // no account nor endpoint
		"azblob://results?account=myaccount&endpoint=https://x", // both
		"azblob://results?account=My_Account",
		"azblob://results?endpoint=ftp://x",
		"azblob://results?account=myaccount&sas=1", // unknown
		"azblob://results?account=myaccount&prefix=a&prefix=b",
		"azblob://results/path?account=myaccount",
		"azblob://user:pw@results?account=myaccount",
		"azblob://results?account=myaccount#frag",
		"azblob://Results?account=myaccount", // container names are lowercase
		"azblob://ab?account=myaccount",
		"azblob://a--b?account=myaccount",
		"azblob://results?account=myaccount&prefix=a./",
		"azblob://results?account=myaccount&prefix=/a",
		"azblob:results?account=myaccount",
		"s3://results?account=myaccount",
	}
	for _, raw := range bad {
		if _, err := Open(t.Context(), raw, Options{Credential: cred}); err == nil {
			t.Errorf("Open(%q) succeeded", raw)
		}
	}
	for _, o := range []Options{
		{Credential: cred, KeyLifetime: 8 * 24 * time.Hour},
		{Credential: cred, KeyLifetime: time.Hour, KeyRenewBefore: time.Hour},
		{Credential: cred, Prefix: "other/"},
	} {
		if _, err := Open(t.Context(), "azblob://results?account=myaccount&prefix=x/", o); err == nil {
			t.Errorf("Open with %+v succeeded", o)
		}
	}
	// The engine registers the scheme: results and signer only.
	e, err := engine.Open(t.Context(), "azblob://results?account=myaccount")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Queue(t.Context()); !errors.Is(err, engine.ErrNoPort) {
		t.Errorf("Queue of the azblob engine: %v, want ErrNoPort", err)
	}
	if _, err := e.Store(t.Context()); !errors.Is(err, engine.ErrNoPort) {
		t.Errorf("Store of the azblob engine: %v, want ErrNoPort", err)
	}
	if c := e.Caps(); c != (engine.Caps{}) {
		t.Errorf("Caps of the azblob engine: %+v, want none", c)
	}
}

func TestValidateKey(t *testing.T) {
	s, err := Open(t.Context(), "azblob://results?account=myaccount&prefix=pp/", Options{Credential: azuritetest.Credential()})
	if err != nil {
		t.Fatal(err)
	}
	good := []string{"a", "a/b/c.json", "data/0192e0d2.blobdata", "ü/日本語", "a b", ".hidden/.dot", "..x/x.y", "a?b#c%d", "emoji-🙂",
		strings.Repeat("k", 1021), strings.Repeat("🙂", 510) + "k", strings.Repeat("a/", 252) + "a"}
	bad := []string{"", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "../x", "a.", "a./b", "a\x00b", "new\nline", "del\x7f", "c1\u0085", "\xff",
		"back\\slash", "non\uffffchar", strings.Repeat("k", 1022), strings.Repeat("🙂", 511), strings.Repeat("a/", 253) + "a"}
	for _, k := range good {
		if err := s.ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q): %v", k, err)
		}
	}
	ctx := t.Context()
	for _, k := range bad {
		if err := s.ValidateKey(k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Put(ctx, k, strings.NewReader("x"), "text/plain"); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Put(%q) = %v, want ErrInvalidKey", k, err)
		}
		if _, err := s.Open(ctx, k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Open(%q) = %v, want ErrInvalidKey", k, err)
		}
		if err := s.Delete(ctx, k); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Delete(%q) = %v, want ErrInvalidKey", k, err)
		}
	}
}

// TestLongNamesRoundTrip: the longest names ValidateKey accepts are
// accepted by Azurite too.
func TestLongNamesRoundTrip(t *testing.T) {
	tb := newTestbed(t, "prefix", "pp/")
	s := tb.open(t)
	for _, k := range []string{strings.Repeat("k", 1021), strings.Repeat("🙂", 510) + "k", strings.Repeat("a/", 252) + "a", "a?b#c%d/x~y'z\"w"} {
		a, err := s.Put(t.Context(), k, strings.NewReader("long"), "text/plain")
		if err != nil {
			t.Errorf("Put(%.40q…): %v", k, err)
			continue
		}
		r, err := s.Open(t.Context(), k)
		if err != nil {
			t.Errorf("Open(%.40q…): %v", k, err)
			continue
		}
		b, _ := io.ReadAll(r)
		r.Close()
		if string(b) != "long" || r.Attributes().ETag != a.ETag {
			t.Errorf("Open(%.40q…): %q ETag %s, want long ETag %s", k, b, r.Attributes().ETag, a.ETag)
		}
	}
}

// TestReaderSeesOneVersion: a reader that seeks after the blob was
// overwritten fails with ErrChanged rather than mixing versions.
func TestReaderSeesOneVersion(t *testing.T) {
	tb := newTestbed(t)
	s := tb.open(t)
	rs := resultstore.New(s)
	ctx := t.Context()
	if _, err := rs.Put(ctx, "k", strings.NewReader("first version"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	r, err := rs.Open(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := rs.Put(ctx, "k", strings.NewReader("second version"), "text/plain"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Seek(6, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(r); !errors.Is(err, ErrChanged) {
		t.Errorf("read after an overwrite and a Seek: %q, %v; want ErrChanged", b, err)
	}
}
