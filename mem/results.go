package mem

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/arrhq/arr/internal/urlsign"
	rdriver "github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/resultstore/fileresult"
)

// blob is a stored result. It is never modified once stored (a Put
// replaces it whole), so readers share its bytes.
type blob struct {
	data  []byte
	attrs rdriver.Attributes
}

// results is a handle on an engine's result store.
type results struct {
	eng    *engine
	opts   ResultsOptions
	signer signer
	held   bool // holds a reference (false: born closed)
	closed atomic.Bool
	once   sync.Once
}

var (
	_ rdriver.Store  = (*results)(nil)
	_ rdriver.Server = (*results)(nil)
)

func newResults(eng *engine, opts ResultsOptions, held bool) *results {
	r := &results{eng: eng, opts: opts, held: held, signer: newSigner(eng.keys, opts.Prefix, opts.MaxURLLifetime)}
	r.closed.Store(!held)
	return r
}

func (o ResultsOptions) withDefaults() (ResultsOptions, error) {
	if o.Prefix == "" {
		o.Prefix = fileresult.DefaultPrefix
	}
	if err := validatePrefix(o.Prefix); err != nil {
		return o, fmt.Errorf("mem: prefix %q: %v", o.Prefix, err)
	}
	if o.MaxURLLifetime < 0 {
		return o, errors.New("mem: negative MaxURLLifetime")
	}
	if o.MaxURLLifetime == 0 {
		o.MaxURLLifetime = fileresult.DefaultMaxURLLifetime
	}
	return o, nil
}

// validatePrefix accepts a plain URL path that begins and ends with "/".
func validatePrefix(p string) error {
	if !strings.HasPrefix(p, "/") || !strings.HasSuffix(p, "/") {
		return errors.New("must begin and end with /")
	}
	u, err := url.Parse(p)
	if err != nil || u.Path != p || u.RawQuery != "" || u.Fragment != "" || strings.Contains(p, "//") {
		return errors.New("not a plain URL path")
	}
	return nil
}

// checkContentType refuses what cannot be a header value.
func checkContentType(ct string) error {
	if len(ct) > 1024 {
		return errors.New("mem: content type too long")
	}
	for _, r := range ct {
		if r < 0x20 || r == 0x7f {
			return errors.New("mem: control character in content type")
		}
	}
	return nil
}

func (r *results) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Put stores the bytes of rd under key. Keys are validated as the file
// driver does (fileresult.ValidateKey), so that a key this store accepts
// works with the file driver too; an empty content type is stored as
// application/octet-stream.
func (r *results) Put(ctx context.Context, key string, rd io.Reader, contentType string) (rdriver.Attributes, error) {
	if err := fileresult.ValidateKey(key); err != nil {
		return rdriver.Attributes{}, err
	}
	if contentType == "" {
		contentType = fileresult.DefaultContentType
	}
	if err := checkContentType(contentType); err != nil {
		return rdriver.Attributes{}, err
	}
	if err := r.begin(ctx); err != nil {
		return rdriver.Attributes{}, err
	}
	data, err := io.ReadAll(rd)
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return rdriver.Attributes{}, fmt.Errorf("mem: put %q: %w", key, err)
	}
	sum := sha256.Sum256(data)
	b := &blob{data: data, attrs: rdriver.Attributes{ContentType: contentType, Size: int64(len(data)),
		ETag: `"` + hex.EncodeToString(sum[:]) + `"`, ModTime: time.Now().UTC()}}
	eng := r.eng
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.closed {
		return rdriver.Attributes{}, ErrClosed
	}
	eng.blobs[key] = b
	return b.attrs, nil
}

// get returns the blob under key, or ErrNotFound.
func (r *results) get(ctx context.Context, key string) (*blob, error) {
	if err := fileresult.ValidateKey(key); err != nil {
		return nil, err
	}
	if err := r.begin(ctx); err != nil {
		return nil, err
	}
	eng := r.eng
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.closed {
		return nil, ErrClosed
	}
	b := eng.blobs[key]
	if b == nil {
		return nil, fmt.Errorf("%w: %q", rdriver.ErrNotFound, key)
	}
	return b, nil
}

type reader struct {
	*bytes.Reader
	attrs rdriver.Attributes
}

func (rd *reader) Attributes() rdriver.Attributes { return rd.attrs }
func (rd *reader) Close() error                   { return nil }

// Open returns a reader of the result under key as it is now; a later Put
// or Delete does not change what it reads.
func (r *results) Open(ctx context.Context, key string) (rdriver.Reader, error) {
	b, err := r.get(ctx, key)
	if err != nil {
		return nil, err
	}
	return &reader{Reader: bytes.NewReader(b.data), attrs: b.attrs}, nil
}

func (r *results) Delete(ctx context.Context, key string) error {
	if err := fileresult.ValidateKey(key); err != nil {
		return err
	}
	if err := r.begin(ctx); err != nil {
		return err
	}
	eng := r.eng
	eng.mu.Lock()
	defer eng.mu.Unlock()
	if eng.closed {
		return ErrClosed
	}
	delete(eng.blobs, key)
	return nil
}

// SignedURL returns a relative URL (Prefix, the escaped key and the query)
// that lets its holder GET or HEAD the result through Handler until expiry.
// An expiry later than now + MaxURLLifetime is refused; one in the past
// gives a URL that is refused when used.
func (r *results) SignedURL(ctx context.Context, key string, expiry time.Time) (string, error) {
	if err := fileresult.ValidateKey(key); err != nil {
		return "", err
	}
	if err := r.begin(ctx); err != nil {
		return "", err
	}
	if expiry.IsZero() || expiry.Unix() <= 0 {
		return "", errors.New("mem: signed URL needs an expiry")
	}
	if expiry.After(time.Now().Add(r.opts.MaxURLLifetime)) {
		return "", fmt.Errorf("mem: expiry %s is more than %s away", expiry.UTC().Format(time.RFC3339), r.opts.MaxURLLifetime)
	}
	return r.signer.sign(key, expiry), nil
}

// Prefix returns the URL path Handler serves; see driver.Server.
func (r *results) Prefix() string { return r.opts.Prefix }

// Handler serves the handle's signed URLs as the file driver's Handler
// does (see fileresult.Store.Handler): GET and HEAD only (405 otherwise),
// 403 for a URL not validly signed or expired, 404 for a result that is
// gone, refusals as application/problem+json; the bytes through
// http.ServeContent (ranges, conditional requests) as an attachment, with
// headers that keep a browser from running or rendering them.
func (r *results) Handler() http.Handler { return http.HandlerFunc(r.serve) }

func (r *results) serve(w http.ResponseWriter, req *http.Request) {
	if !urlsign.AllowMethod(w, req) {
		return
	}
	now := time.Now()
	key, exp, err := r.signer.verify(req, now)
	if err != nil {
		urlsign.WriteRefusal(w, req, err, exp)
		return
	}
	b, err := r.get(req.Context(), key)
	if errors.Is(err, rdriver.ErrNotFound) {
		urlsign.WriteNotFound(w, req)
		return
	}
	if err != nil {
		urlsign.WriteProblem(w, req, http.StatusInternalServerError, fileresult.ProblemInternal, "Internal error", "the result could not be read")
		return
	}
	h := w.Header()
	h.Set("Content-Type", b.attrs.ContentType)
	h.Set("ETag", b.attrs.ETag)
	h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(max(int64(exp.Sub(now)/time.Second), 0), 10))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
	h.Set("Referrer-Policy", "no-referrer")
	cd := mime.FormatMediaType("attachment", map[string]string{"filename": urlsign.DownloadName(key, b.attrs.ContentType)})
	if cd == "" {
		cd = "attachment"
	}
	h.Set("Content-Disposition", cd)
	http.ServeContent(w, req, "", b.attrs.ModTime, bytes.NewReader(b.data))
}

// Close releases the handle's reference to the engine.
func (r *results) Close() error {
	r.once.Do(func() {
		r.closed.Store(true)
		if r.held {
			r.eng.release()
		}
	})
	return nil
}
