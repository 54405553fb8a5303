// Package azuritetest gives tests of the Azure drivers a real Azure
// Storage to talk to: Azurite (the emulator, from npm) in HTTPS and OAuth
// mode, as .ci/azurite.sh starts it on 127.0.0.1:10000 (blob), 10001
// (queue) and 10002 (table) with its certificate in $ARR_AZURITE_DIR
// (default /tmp/arr-azurite). Azurite checks a bearer token's audience,
// issuer and times but not its signature, so the credentials here hand it
// unsigned tokens: in process (Credential) or, for an arr process, through
// a managed identity endpoint of the App Service kind (IdentityEndpoint),
// which azidentity's DefaultAzureCredential reads from the environment as
// it does on Azure Container Apps and App Service.
//
// Start skips the test when Azurite is not running and CI is unset; under
// CI it fails, since .ci/run starts Azurite.
package azuritetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"

	"github.com/arrhq/arr/internal/azclient"
)

// Account is Azurite's account.
const Account = "devstoreaccount1"

// Tenant and Object are the tenant and object IDs of the tokens the
// credentials here hand out: a user delegation SAS carries them as sktid
// and skoid.
const (
	Tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	Object = "6d3c7a36-2f0b-4b1e-9e5c-5f6a3c1b2d4e"
)

// Ports of Azurite's services, as .ci/azurite.sh starts them.
const (
	BlobPort  = 10000
	QueuePort = 10001
	TablePort = 10002
)

// Server is a running Azurite.
type Server struct {
	// CertFile is the PEM certificate Azurite serves (its own CA).
	CertFile string
	// Pool trusts CertFile.
	Pool *x509.CertPool
}

// Dir is where .ci/azurite.sh keeps Azurite's certificate and data.
func Dir() string {
	if d := os.Getenv("ARR_AZURITE_DIR"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "arr-azurite")
}

// Start returns the running Azurite, skipping t when there is none and CI
// is unset, failing it under CI.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Find()
	if err != nil {
		msg := err.Error() + "; start it with bash .ci/azurite.sh"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return s
}

// Find is Start outside tests: the running Azurite, or an error saying
// why there is none.
func Find() (*Server, error) {
	cert := filepath.Join(Dir(), "cert.pem")
	pem, err := os.ReadFile(cert)
	if err != nil {
		return nil, fmt.Errorf("azuritetest: Azurite is not running (%v)", err)
	}
	for _, port := range []int{BlobPort, QueuePort, TablePort} {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
		if err != nil {
			return nil, fmt.Errorf("azuritetest: Azurite is not running (%v)", err)
		}
		c.Close()
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("azuritetest: no certificate in %s", cert)
	}
	return &Server{CertFile: cert, Pool: pool}, nil
}

// CreateContainer creates a blob container (arr's azblob:// store needs
// one, as on Azure).
func (s *Server) CreateContainer(ctx context.Context, name string) error {
	c, err := azblob.NewClient(s.BlobURL(), Credential(), &azblob.ClientOptions{ClientOptions: s.ClientOptions()})
	if err != nil {
		return err
	}
	_, err = c.CreateContainer(ctx, name, nil)
	return err
}

// DeleteContainer deletes a blob container and what it holds.
func (s *Server) DeleteContainer(ctx context.Context, name string) error {
	c, err := azblob.NewClient(s.BlobURL(), Credential(), &azblob.ClientOptions{ClientOptions: s.ClientOptions()})
	if err != nil {
		return err
	}
	_, err = c.DeleteContainer(ctx, name, nil)
	return err
}

// Container creates a blob container deleted when t ends.
func (s *Server) Container(t testing.TB, name string) {
	t.Helper()
	if err := s.CreateContainer(context.Background(), name); err != nil {
		t.Fatalf("azuritetest: creating container %s: %v", name, err)
	}
	t.Cleanup(func() { _ = s.DeleteContainer(context.Background(), name) })
}

// BlobURL, QueueURL and TableURL are the services' URLs in Azure's host
// style (https://devstoreaccount1.blob.localhost:10000): Azurite reads
// the account from the host name, and so do the Azure SDKs (a user
// delegation SAS signed for an IP-style URL names the wrong account).
// Names under .localhost are loopback (RFC 6761); HTTPClient and arr's
// Azure drivers dial them at 127.0.0.1.
func (s *Server) BlobURL() string { return hostURL("blob", BlobPort) }

// QueueURL is the queue service's URL (see BlobURL).
func (s *Server) QueueURL() string { return hostURL("queue", QueuePort) }

// TableURL is the table service's URL (see BlobURL).
func (s *Server) TableURL() string { return hostURL("table", TablePort) }

func hostURL(service string, port int) string {
	return fmt.Sprintf("https://%s.%s.localhost:%d", Account, service, port)
}

// HTTPClient trusts Azurite's certificate and dials every host name
// under .localhost at 127.0.0.1.
func (s *Server) HTTPClient() *http.Client {
	return &http.Client{Transport: s.Transport(), Timeout: 60 * time.Second}
}

// Transport is HTTPClient's transport.
func (s *Server) Transport() *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.Pool},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, azclient.Loopback(addr))
		},
		MaxIdleConnsPerHost: 64,
	}
}

// ClientOptions are azcore client options whose transport is HTTPClient.
func (s *Server) ClientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{Transport: s.HTTPClient()}
}

// Token returns an unsigned JWT for audience (https://storage.azure.com
// when empty), valid for an hour, with the Tenant and Object claims.
func Token(audience string) (string, time.Time) {
	if audience == "" {
		audience = "https://storage.azure.com"
	}
	now := time.Now()
	exp := now.Add(time.Hour)
	hdr, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	claims, _ := json.Marshal(map[string]any{
		"aud": audience, "iss": "https://sts.windows.net/" + Tenant + "/",
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": exp.Unix(),
		"oid": Object, "tid": Tenant, "appid": Object, "sub": Object,
	})
	enc := base64.RawURLEncoding.EncodeToString
	return enc(hdr) + "." + enc(claims) + ".", exp
}

// Credential is an azcore.TokenCredential handing out Token for the
// scope's audience.
func Credential() azcore.TokenCredential { return credential{} }

type credential struct{}

func (credential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	aud := ""
	if len(opts.Scopes) > 0 {
		aud = strings.TrimSuffix(opts.Scopes[0], "/.default")
	}
	tok, exp := Token(aud)
	return azcore.AccessToken{Token: tok, ExpiresOn: exp}, nil
}

// IdentityEndpoint starts a managed identity endpoint of the kind App
// Service and Container Apps run beside an app, handing out Token, and
// returns the environment that points azidentity's managed identity
// credential (and so DefaultAzureCredential) at it, plus SSL_CERT_FILE so
// that the process trusts Azurite. Requests counts the tokens it handed
// out.
func (s *Server) IdentityEndpoint(t testing.TB) (env []string, requests func() int) {
	t.Helper()
	env, requests = IdentityEndpoint(t, Token)
	return append(env, "SSL_CERT_FILE="+s.CertFile), requests
}

// IdentityEndpoint starts a managed identity endpoint of the App Service
// kind handing out the tokens token makes for a resource (an audience such
// as https://storage.azure.com), stopped when t ends, and returns the
// environment that points azidentity's managed identity credential at it
// (IDENTITY_ENDPOINT, IDENTITY_HEADER) and a count of the tokens it handed
// out. It needs no Azurite.
func IdentityEndpoint(t testing.TB, token func(resource string) (string, time.Time)) (env []string, requests func() int) {
	t.Helper()
	srv, env, requests := NewIdentityServer(token)
	t.Cleanup(srv.Close)
	return env, requests
}

// NewIdentityServer is IdentityEndpoint outside tests (a benchmark, say):
// the caller closes srv.
func NewIdentityServer(token func(resource string) (string, time.Time)) (srv *httptest.Server, env []string, requests func() int) {
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	header := hex.EncodeToString(secret)
	var n atomic.Int64
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-IDENTITY-HEADER") != header {
			http.Error(w, "bad identity header", http.StatusUnauthorized)
			return
		}
		n.Add(1)
		resource := r.URL.Query().Get("resource")
		tok, exp := token(strings.TrimSuffix(resource, "/.default"))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"access_token": tok, "expires_on": fmt.Sprint(exp.Unix()), "resource": resource,
			"token_type": "Bearer", "client_id": Object,
		})
	}))
	return srv, []string{"IDENTITY_ENDPOINT=" + srv.URL, "IDENTITY_HEADER=" + header},
		func() int { return int(n.Load()) }
}
