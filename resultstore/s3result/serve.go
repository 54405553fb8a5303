package s3result

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/arrhq/arr/internal/urlsign"
)

// Problem types of the responses Handler refuses with (those of the file
// driver, plus one for a failing S3).
const (
	ProblemSignedURLInvalid = urlsign.ProblemSignedURLInvalid // "urn:arr:problem:signed-url-invalid"
	ProblemSignedURLExpired = urlsign.ProblemSignedURLExpired // "urn:arr:problem:signed-url-expired"
	ProblemResultNotFound   = urlsign.ProblemResultNotFound   // "urn:arr:problem:result-not-found"
	ProblemMethodNotAllowed = urlsign.ProblemMethodNotAllowed // "urn:arr:problem:method-not-allowed"
	ProblemStoreUnavailable = "urn:arr:problem:result-store-unavailable"
)

// RedirectLifetime is the longest lifetime of the S3 presigned URL Handler
// redirects to; it is shorter when the arr URL expires sooner.
const RedirectLifetime = 5 * time.Minute

// Prefix returns the URL path under which Handler serves signed URLs
// (Options.URLPrefix, default "/blobs/").
func (s *Store) Prefix() string { return s.urlPrefix }

// Handler serves the store's signed URLs; see driver.Server. Mount it at
// Prefix with the request path unchanged (mux.Handle(s.Prefix(),
// s.Handler()), not under http.StripPrefix).
//
// Only GET and HEAD are served (others: 405, with Allow: GET, HEAD). A URL
// that is malformed, not validly signed or expired gets 403; a validly
// signed URL whose result does not exist (a HeadObject answers 404) gets
// 404; an S3 failure gets 502; refusals are application/problem+json with
// Cache-Control: no-store. A valid URL of an existing result gets
// "307 Temporary Redirect" to a fresh S3 presigned URL of the object for
// the request's method (a presigned GetObject for GET, HeadObject for
// HEAD), signed at the current second and valid until the arr URL's expiry
// or for RedirectLifetime, whichever ends first: it never outlives the
// arr URL. The redirect carries Cache-Control: no-store and no body. HTTP
// clients follow a 307 with the same method and headers (Go's, browsers,
// curl -L), so Range, If-None-Match, If-Match and If-Modified-Since are
// answered by S3, and the bytes go from S3 to the client, never through
// arr. The presigned GET asks S3 to answer with
// "Content-Disposition: attachment" and the key's last segment as file
// name, as the file driver does. The existence check and the client's
// request to S3 are two requests: a result deleted in between gets S3's
// own 404 (an XML error, not problem+json). Each request costs arr one
// HeadObject and a local presigning, and no transfer of the bytes.
func (s *Store) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *Store) serve(w http.ResponseWriter, r *http.Request) {
	if !urlsign.AllowMethod(w, r) {
		return
	}
	key, exp, err := s.check(r)
	if err != nil {
		urlsign.WriteRefusal(w, r, err, exp)
		return
	}
	ctx := r.Context()
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucketName), Key: aws.String(s.prefix + key)})
	if httpStatus(err) == http.StatusNotFound {
		urlsign.WriteNotFound(w, r)
		return
	}
	if err != nil {
		urlsign.WriteProblem(w, r, http.StatusBadGateway, ProblemStoreUnavailable, "Result store unavailable", "the result store could not be reached")
		return
	}
	loc, err := s.presignRedirect(ctx, r.Method, key, aws.ToString(head.ContentType), exp)
	if errors.Is(err, urlsign.ErrExpired) {
		urlsign.WriteRefusal(w, r, err, exp)
		return
	}
	if err != nil {
		urlsign.WriteProblem(w, r, http.StatusBadGateway, ProblemStoreUnavailable, "Result store unavailable", "the result's URL could not be signed")
		return
	}
	h := w.Header()
	h.Set("Location", loc)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusTemporaryRedirect)
}

// fixedTimePresigner is S3's SigV4 presigner with the signing time (the
// X-Amz-Date of the URL) chosen by the store rather than the SDK's clock,
// so that X-Amz-Date + X-Amz-Expires is exactly the end the store chose.
type fixedTimePresigner struct {
	signer *v4.Signer
	at     time.Time
}

func (p fixedTimePresigner) PresignHTTP(ctx context.Context, creds aws.Credentials, r *http.Request, payloadHash, service, region string, _ time.Time, optFns ...func(*v4.SignerOptions)) (string, http.Header, error) {
	return p.signer.PresignHTTP(ctx, creds, r, payloadHash, service, region, p.at, optFns...)
}

// presignRedirect returns an S3 presigned URL of key for method (GET or
// HEAD), signed at the current second T and valid for min(exp - T,
// RedirectLifetime): its end T + lifetime is never after exp, because exp
// is a whole second and T is the current time rounded down. It returns
// urlsign.ErrExpired when exp has passed.
func (s *Store) presignRedirect(ctx context.Context, method, key, contentType string, exp time.Time) (string, error) {
	at := s.now().UTC().Truncate(time.Second)
	life := min(exp.Sub(at), RedirectLifetime).Truncate(time.Second)
	if life < time.Second {
		return "", urlsign.ErrExpired
	}
	opt := func(o *s3.PresignOptions) {
		o.Presigner = fixedTimePresigner{signer: s.v4, at: at}
		o.Expires = life
	}
	objKey := aws.String(s.prefix + key)
	var (
		req *v4.PresignedHTTPRequest
		err error
	)
	if method == http.MethodHead {
		req, err = s.presigner.PresignHeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucketName), Key: objKey}, opt)
	} else {
		in := &s3.GetObjectInput{Bucket: aws.String(s.bucketName), Key: objKey}
		in.ResponseContentDisposition = aws.String(contentDisposition(key, contentType))
		req, err = s.presigner.PresignGetObject(ctx, in, opt)
	}
	if err != nil {
		return "", err
	}
	return req.URL, nil
}

// contentDisposition is "attachment" with the key's last segment as file
// name, plus an extension for the common text types when it has none (as
// the file driver names downloads); RFC 6266, with filename* for names
// that are not plain ASCII.
func contentDisposition(key, contentType string) string {
	name := urlsign.DownloadName(key, contentType)
	plain := true
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '%' {
			plain = false
			break
		}
	}
	if plain {
		return `attachment; filename="` + name + `"`
	}
	return `attachment; filename*=UTF-8''` + url.PathEscape(name)
}

// check parses and verifies the signed URL of r (see
// urlsign.Scheme.Verify; nothing but se, kid and sig may be in the query),
// returning its key and expiry.
func (s *Store) check(r *http.Request) (string, time.Time, error) {
	return s.scheme().VerifyRequest(r, s.urlPrefix, s.ValidateKey, s.now(), s.lookupKey(r.Context()))
}
