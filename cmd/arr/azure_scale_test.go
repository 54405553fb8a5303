package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"testing"

	"github.com/arrhq/arr/internal/azuritetest"
	"github.com/arrhq/arr/internal/pgtest"
)

// TestScaleOutAzure: the seed's platform in emulation. Two `arr api` and
// two `arr worker` processes share Azure Queue Storage (azqueue://, with
// its index in Table Storage), results in Azure Blob Storage (azblob://,
// read through user delegation SAS URLs) and PostgreSQL for the records;
// every process authenticates to Azurite through DefaultAzureCredential
// and a managed identity endpoint, with no key. 2,000 operations, one
// worker SIGKILLed at a quarter: every accepted operation succeeds with
// its own bytes, read through the api and, for a sample, through the SAS
// URL of the 303; none is lost and none is made twice.
func TestScaleOutAzure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	az := azuritetest.Start(t)
	env, _ := az.IdentityEndpoint(t)
	var b [5]byte
	_, _ = rand.Read(b[:])
	name := "scale" + hex.EncodeToString(b[:])
	az.Container(t, name)
	eng := scaleEngine{
		storeURL:   pgtest.URL(t),
		queueURL:   "azqueue://" + name + "?endpoint=" + url.QueryEscape(az.QueueURL()) + "&table_endpoint=" + url.QueryEscape(az.TableURL()),
		signedURLs: az.HTTPClient(),
	}
	results := "azblob://" + name + "?endpoint=" + url.QueryEscape(az.BlobURL())
	total := 2000
	if n := scaleOps(t); n < total {
		total = n
	}
	runScaleOut(t, eng, results, env, total)
}
