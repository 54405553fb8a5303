package azuritetest_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/arrhq/arr/internal/azuritetest"
)

// Azurite takes the harness's tokens, hands out a user delegation key for
// them, and serves a blob through a user delegation SAS on the host-style
// URL, refusing the same URL tampered with.
func TestUserDelegationSASOnAzurite(t *testing.T) {
	s := azuritetest.Start(t)
	ctx := context.Background()
	opts := &azblob.ClientOptions{ClientOptions: s.ClientOptions()}
	c, err := azblob.NewClient(s.BlobURL(), azuritetest.Credential(), opts)
	if err != nil {
		t.Fatal(err)
	}
	container := "azuritetest-" + strings.ToLower(time.Now().Format("150405.000000000"))
	container = strings.ReplaceAll(container, ".", "")
	if _, err := c.CreateContainer(ctx, container, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.DeleteContainer(context.Background(), container, nil) })
	if _, err := c.UploadBuffer(ctx, container, "b", []byte("bytes"), nil); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Add(-time.Minute)
	exp := now.Add(10 * time.Minute)
	svc := c.ServiceClient()
	udc, err := svc.GetUserDelegationCredential(ctx, service.KeyInfo{Start: to(now.Format(sas.TimeFormat)), Expiry: to(exp.Format(sas.TimeFormat))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	q, err := sas.BlobSignatureValues{Protocol: sas.ProtocolHTTPS, StartTime: now, ExpiryTime: exp,
		Permissions: (&sas.BlobPermissions{Read: true}).String(), ContainerName: container, BlobName: "b"}.SignWithUserDelegation(udc)
	if err != nil {
		t.Fatal(err)
	}
	u := s.BlobURL() + "/" + container + "/b?" + q.Encode()
	for _, k := range []string{"skoid=", "sktid=", "sp=r", "se="} {
		if !strings.Contains(u, k) {
			t.Fatalf("SAS URL %s lacks %s", u, k)
		}
	}
	get := func(u string) (int, string) {
		resp, err := s.HTTPClient().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(u); code != http.StatusOK || body != "bytes" {
		t.Fatalf("GET SAS URL = %d %q", code, body)
	}
	if code, _ := get(strings.Replace(u, "sp=r", "sp=rw", 1)); code != http.StatusForbidden {
		t.Fatalf("GET widened SAS URL = %d, want 403", code)
	}
}

func to(s string) *string { return &s }
