package entra_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/jackc/pgx/v5"

	"github.com/arrhq/arr/internal/azuritetest"
	"github.com/arrhq/arr/internal/pgtest"
	"github.com/arrhq/arr/operation"
	"github.com/arrhq/arr/opstore/opstoretest"
	"github.com/arrhq/arr/postgres"
	"github.com/arrhq/arr/postgres/entra"
)

// A server that takes only passwords for the user (scram-sha-256), whose
// password is the token a managed identity endpoint hands out: auth=entra
// connects through DefaultAzureCredential as on Azure (the App Service
// kind of endpoint, as Container Apps runs), for the pool and for the
// listening connection, and asks the endpoint once for many connections;
// a token the server does not take fails the open.
func TestEntraTokenIsThePassword(t *testing.T) {
	s := pgtest.StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// A token as long as Entra's (a JWT of about 1.5 KB).
	good := "eyJ0eXAiOiJKV1QifQ." + strings.Repeat("a", 1500) + ".sig"
	var current atomic.Value
	current.Store(good)
	env, requests := azuritetest.IdentityEndpoint(t, func(resource string) (string, time.Time) {
		if resource != "https://ossrdbms-aad.database.windows.net" {
			return "wrong-audience-" + resource, time.Now().Add(time.Hour)
		}
		return current.Load().(string), time.Now().Add(time.Hour)
	})
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}

	admin, err := pgx.Connect(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		fmt.Sprintf("CREATE ROLE arr_identity LOGIN PASSWORD '%s'", good),
		"GRANT CREATE ON DATABASE postgres TO arr_identity",
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	admin.Close(ctx)
	if err := s.SetHBA("local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"); err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(s.URL, "postgres://postgres@", "postgres://arr_identity@", 1)

	// Without auth=entra the user has no password: refused.
	if db, err := postgres.Open(ctx, base+"&schema=entra_none"); err == nil {
		db.Close()
		t.Fatal("opened without a password")
	}

	db, err := postgres.Open(ctx, base+"&schema=entra_ok&auth=entra&pool_min_conns=3")
	if err != nil {
		t.Fatalf("Open with auth=entra: %v", err)
	}
	defer db.Close()
	st := db.Store()
	defer st.Close()
	now := time.Now().UTC()
	op := &operation.Operation{ID: opstoretest.NewID(), Route: "echo", Status: operation.Pending, CreatedAt: now, UpdatedAt: now}
	if _, _, err := st.Create(ctx, op, &operation.Request{Path: "/v1/echo"}); err != nil {
		t.Fatal(err)
	}
	// The listening connection authenticates too: a change wakes a watcher.
	changed, stop, err := st.Watch(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	got, err := st.Get(ctx, op.ID)
	if err != nil {
		t.Fatal(err)
	}
	got.Status = operation.Running
	if err := st.Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(20 * time.Second):
		t.Fatal("no change notification: the listening connection did not authenticate")
	}
	// One token serves the pool and its listener (azidentity caches it;
	// none when an earlier run of this test in the process left it cached:
	// the process has one credential).
	if n := requests(); n > 1 {
		t.Fatalf("the identity endpoint handed out %d tokens for one pool and its listener, want 1 (azidentity caches it)", n)
	}

	// A token the server does not take fails the open, saying so.
	if _, err := postgres.Open(ctx, base+"&schema=entra_bad&auth=test-wrong-token"); err == nil ||
		!strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("Open with a token the server refuses = %v, want password authentication failed", err)
	}
}

func init() {
	postgres.RegisterAuth("test-wrong-token", func(context.Context) (postgres.PasswordFunc, error) {
		return entra.Password(staticToken("eyJ0eXAiOiJKV1QifQ.not-the-password.sig")), nil
	})
}

type staticToken string

func (s staticToken) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: string(s), ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// auth= with a name no package registered is refused with the names this
// program links.
func TestUnknownAuth(t *testing.T) {
	_, err := postgres.Open(context.Background(), "postgres://u@127.0.0.1:1/db?auth=kerberos")
	if err == nil || !strings.Contains(err.Error(), `auth="kerberos"`) || !strings.Contains(err.Error(), "entra") {
		t.Fatalf("Open with auth=kerberos = %v", err)
	}
}
