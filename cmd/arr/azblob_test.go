package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"

	"github.com/arrhq/arr/internal/azuritetest"
)

// TestAzureBlobResults is the seed's walk-through with results in Azure
// Blob Storage (Azurite): `arr serve -results azblob://…` authenticates
// with DefaultAzureCredential through a managed identity endpoint, as on
// Azure Container Apps, with no key anywhere; the seed's status route
// answers 303 to a user delegation SAS URL of the result's blob, which
// serves the bytes that were submitted, straight from storage.
func TestAzureBlobResults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	srv := azuritetest.Start(t)
	co := srv.ClientOptions()
	svc, err := service.NewClient(srv.BlobURL()+"/", azuritetest.Credential(), &service.ClientOptions{ClientOptions: co})
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	container := "arr-e2e-" + hex.EncodeToString(b[:])
	if _, err := svc.CreateContainer(t.Context(), container, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := svc.DeleteContainer(ctx, container, nil); err != nil {
			t.Errorf("deleting container %s: %v", container, err)
		}
	})
	env, tokens := srv.IdentityEndpoint(t)
	results := "azblob://" + container + "?" + url.Values{"endpoint": {srv.BlobURL()}, "prefix": {"e2e/"}}.Encode()
	addr := freeAddr(t)
	base := "http://" + addr
	p := startProc(t, "serve", addr, t.TempDir(), env, "-results", results)
	defer func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("arr log:\n%s", tail(p.log.String(), 3000))
		}
	}()
	if tokens() == 0 {
		t.Error("arr became ready without a token from the managed identity endpoint")
	}

	body := `{"id":"1234","customername":"Contoso"}`
	res, err := http.Post(base+"/api/AsyncProcessingWorkAcceptor", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var op struct{ ID string }
	_ = json.NewDecoder(res.Body).Decode(&op)
	res.Body.Close()
	loc := res.Header.Get("Location")
	if res.StatusCode != http.StatusAccepted || loc == "" || op.ID == "" {
		t.Fatalf("submit: %d Location %q id %q", res.StatusCode, loc, op.ID)
	}
	// The Location is a status-code URL: 202 until done, then the bytes.
	locURL, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := hc.Get(base + locURL.RequestURI())
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusOK {
			if string(got) != body {
				t.Fatalf("Location when done: %q, want %q", got, body)
			}
			break
		}
		if res.StatusCode != http.StatusAccepted || time.Now().After(deadline) {
			t.Fatalf("Location: %d %s", res.StatusCode, got)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The bare status URL: 303 to a user delegation SAS of the blob.
	noRedirect := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err = noRedirect.Get(base + "/api/RequestStatus/" + op.ID)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusSeeOther {
		t.Fatalf("bare status URL when done: %d, want 303", res.StatusCode)
	}
	checkSAS := func(what, u string) {
		t.Helper()
		pu, err := url.Parse(u)
		if err != nil || !strings.HasPrefix(u, srv.BlobURL()+"/"+container+"/e2e/") {
			t.Fatalf("%s: %q is not a URL of a blob in %s/%s/e2e/", what, u, srv.BlobURL(), container)
		}
		q := pu.Query()
		if q.Get("skoid") != azuritetest.Object || q.Get("sktid") != azuritetest.Tenant || q.Get("sp") != "r" || q.Get("se") == "" || q.Get("sig") == "" {
			t.Errorf("%s: %s is not a read-only user delegation SAS (skoid, sktid, sp=r, se, sig)", what, u)
		}
		res, err := srv.HTTPClient().Get(u)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || string(got) != body || res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: GET of the SAS URL: %d %q Content-Type %q, want 200 %q application/json", what, res.StatusCode, got, res.Header.Get("Content-Type"), body)
		}
		if cd := res.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
			t.Errorf("%s: GET of the SAS URL: Content-Disposition %q, want an attachment", what, cd)
		}
	}
	checkSAS("303 of /api/RequestStatus", res.Header.Get("Location"))

	// The operation JSON's result.href is such a URL too.
	res, err = hc.Get(base + "/v1/operations/" + op.ID + "?redirect=false")
	if err != nil {
		t.Fatal(err)
	}
	var view struct {
		Status string
		Result struct{ Href string }
	}
	err = json.NewDecoder(res.Body).Decode(&view)
	res.Body.Close()
	if err != nil || view.Status != "succeeded" {
		t.Fatalf("operation JSON: %v status %q", err, view.Status)
	}
	checkSAS("result.href", view.Result.Href)
}
