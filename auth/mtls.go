package auth

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"

	arr "github.com/arrhq/arr"
)

// ClientCert authenticates requests by the TLS client certificate that
// the server verified (see ServerTLS): the principal is the
// certificate's first URI SAN (e.g. a SPIFFE ID,
// spiffe://example.org/ns/prod/sa/billing) when it has one, else its
// subject's Common Name. A request without a verified certificate
// carries no credentials; a verified certificate with neither is
// ErrInvalid.
type ClientCert struct {
	// Admins are the principals that are admins.
	Admins []string
}

// Authenticate implements Authenticator.
func (cc *ClientCert) Authenticate(r *http.Request) (arr.Caller, error) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return arr.Caller{}, ErrNoCredentials
	}
	p := CertPrincipal(r.TLS.VerifiedChains[0][0])
	if p == "" {
		return arr.Caller{}, fmt.Errorf("%w: the client certificate has no URI SAN and no Common Name", ErrInvalid)
	}
	c := arr.Caller{Principal: p, Admin: slices.Contains(cc.Admins, p)}
	if err := c.Valid(); err != nil {
		return arr.Caller{}, fmt.Errorf("%w: client certificate: %v", ErrInvalid, err)
	}
	return c, nil
}

// CertPrincipal is the principal of a client certificate: its first URI
// SAN, else its subject's Common Name, else "".
func CertPrincipal(cert *x509.Certificate) string {
	if len(cert.URIs) > 0 {
		return cert.URIs[0].String()
	}
	return cert.Subject.CommonName
}

// ServerTLS builds the TLS configuration of an HTTPS listener from PEM
// files: certFile and keyFile are the server's certificate (chain) and
// key; clientCAFile, if not "", holds the CAs that client certificates
// must chain to. A client may connect without a certificate (probes and
// signed result URLs need none) but one that presents a certificate not
// signed by those CAs fails the handshake; ClientCert reads the verified
// ones. TLS 1.2 is the minimum.
func ServerTLS(certFile, keyFile, clientCAFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate (-tls-cert) and its key (-tls-key)")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAFile != "" {
		pem, err := os.ReadFile(clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS client CA: %s holds no PEM certificate", clientCAFile)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg, nil
}
