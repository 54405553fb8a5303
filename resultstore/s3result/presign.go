package s3result

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/arrhq/arr/resultstore/driver"
	"github.com/arrhq/arr/urlsign"
)

// RedirectLifetime is the longest lifetime of the URLs PresignedURL
// returns; they are shorter when the end they are given is sooner.
const RedirectLifetime = 5 * time.Minute

// PresignedURL implements driver.Presigner: after a HeadObject of the
// result (404: an error wrapping driver.ErrNotFound), it returns a fresh
// S3 presigned URL of the object for method (a presigned GetObject for
// GET, HeadObject for HEAD), signed at the current second and valid until
// end or for RedirectLifetime, whichever ends first: it never outlives
// end. The presigned GET asks S3 to answer with "Content-Disposition:
// attachment" and urlsign.DownloadName of the key as file name. The
// existence check and the client's request to S3 are two requests: a
// result deleted in between gets S3's own 404. It costs one HeadObject and
// a local presigning.
func (s *Store) PresignedURL(ctx context.Context, method, key string, end time.Time) (string, error) {
	if err := s.ValidateKey(key); err != nil {
		return "", err
	}
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucketName), Key: aws.String(s.prefix + key)})
	if httpStatus(err) == http.StatusNotFound {
		return "", fmt.Errorf("s3result: presign %q: %w", key, driver.ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("s3result: presign %q: %w", key, err)
	}
	return s.presignRedirect(ctx, method, key, aws.ToString(head.ContentType), end)
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
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
// driver.ErrExpired when exp has passed.
func (s *Store) presignRedirect(ctx context.Context, method, key, contentType string, exp time.Time) (string, error) {
	at := s.now().UTC().Truncate(time.Second)
	life := min(exp.Sub(at), RedirectLifetime).Truncate(time.Second)
	if life < time.Second {
		return "", fmt.Errorf("s3result: presign %q: %w", key, driver.ErrExpired)
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
