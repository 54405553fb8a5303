// Package azclient holds what arr's Azure drivers (azblob://, azqueue://,
// azservicebus://, and PostgreSQL's Entra authentication) share: the
// credential, the HTTP client options and the service endpoints a driver
// URL names. There are no keys: every driver authenticates with a
// Microsoft Entra token from azidentity's DefaultAzureCredential (managed
// identity, workload identity, environment, Azure CLI).
package azclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// ApplicationID is sent in the User-Agent of every Azure request.
const ApplicationID = "arr"

var (
	credOnce sync.Once
	cred     azcore.TokenCredential
	credErr  error
)

// Credential returns the process's one DefaultAzureCredential, made on
// first use (its token caches are then shared by every driver).
func Credential() (azcore.TokenCredential, error) {
	credOnce.Do(func() {
		cred, credErr = azidentity.NewDefaultAzureCredential(&azidentity.DefaultAzureCredentialOptions{
			ClientOptions: ClientOptions(),
		})
		if credErr != nil {
			credErr = fmt.Errorf("azure: no credential (DefaultAzureCredential: managed identity, workload identity, AZURE_* environment or Azure CLI): %w", credErr)
		}
	})
	return cred, credErr
}

// ClientOptions are the azcore options of every Azure client arr makes:
// its HTTP client (see HTTPClient) and its application ID.
func ClientOptions() azcore.ClientOptions {
	return azcore.ClientOptions{
		Transport: HTTPClient(),
		Telemetry: policy.TelemetryOptions{ApplicationID: ApplicationID},
	}
}

var (
	clientOnce sync.Once
	client     *http.Client
)

// HTTPClient is the HTTP client of arr's Azure clients: Go's default
// transport (proxy from the environment, system roots plus SSL_CERT_FILE)
// with one addition, host names under ".localhost" dialed at the loopback
// address, as RFC 6761 (§6.3) asks of resolvers and Go's does not do. So
// an emulator on this machine is reached by Azure's host-style URLs
// (https://devstoreaccount1.blob.localhost:10000), from which Azure Storage
// and its SDKs read the account name.
func HTTPClient() *http.Client {
	clientOnce.Do(func() {
		t := http.DefaultTransport.(*http.Transport).Clone()
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, Loopback(addr))
		}
		t.MaxIdleConnsPerHost = 64
		client = &http.Client{Transport: t}
	})
	return client
}

// Loopback returns addr (host:port) with a host name under ".localhost"
// (or "localhost" itself) replaced by 127.0.0.1, and addr otherwise.
func Loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	if h == "localhost" || strings.HasSuffix(h, ".localhost") {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// Endpoint returns the URL of an Azure Storage service ("blob", "queue" or
// "table") that a driver URL's query names: its endpoint parameter (an
// absolute http or https URL; a custom domain, a private endpoint or an
// emulator) or else https://<account>.<service>.core.windows.net from its
// account parameter. Exactly one of the two must be given.
func Endpoint(q url.Values, service string) (string, error) {
	account, endpoint := q.Get("account"), q.Get("endpoint")
	switch {
	case account != "" && endpoint != "":
		return "", errors.New("azure: give account or endpoint, not both")
	case endpoint != "":
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return "", fmt.Errorf("azure: endpoint %q is not an absolute http(s) URL", endpoint)
		}
		return strings.TrimSuffix(u.String(), "/"), nil
	case account != "":
		if !validAccount(account) {
			return "", fmt.Errorf("azure: account %q is not a storage account name (3 to 24 lowercase letters and digits)", account)
		}
		return "https://" + account + "." + service + ".core.windows.net", nil
	}
	return "", errors.New("azure: the URL names no account (?account=NAME) nor endpoint (?endpoint=URL)")
}

func validAccount(s string) bool {
	if len(s) < 3 || len(s) > 24 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}
