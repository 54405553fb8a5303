// Package entra gives arr's PostgreSQL engine Microsoft Entra
// authentication, for Azure Database for PostgreSQL (flexible server)
// without a password anywhere: importing it registers the URL parameter
// auth=entra with package postgres, which makes every connection's
// password an Entra access token for Azure's PostgreSQL audience, from
// azidentity's DefaultAzureCredential (managed identity, workload
// identity, AZURE_* environment, Azure CLI):
//
//	postgres://my-identity@myserver.postgres.database.azure.com/arr?sslmode=verify-full&auth=entra
//
// The user is the Entra principal's name as the server knows it (for a
// managed identity, the name it was added with, e.g. by
// pgaadauth_create_principal). A token lives about an hour; azidentity
// caches it and fetches the next one before it expires, and each new
// connection asks for the current one. A connection stays open past its
// token's expiry (the server checks the token when it connects), so the
// pool's pool_max_conn_lifetime need not be shorter than a token's life.
package entra

import (
	"context"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/arrhq/arr/internal/azclient"
	"github.com/arrhq/arr/postgres"
)

// Scope is the token scope of Azure Database for PostgreSQL.
const Scope = "https://ossrdbms-aad.database.windows.net/.default"

func init() {
	postgres.RegisterAuth("entra", func(ctx context.Context) (postgres.PasswordFunc, error) {
		cred, err := azclient.Credential()
		if err != nil {
			return nil, err
		}
		return Password(cred), nil
	})
}

// Password returns the PasswordFunc that hands out cred's tokens for
// Scope.
func Password(cred azcore.TokenCredential) postgres.PasswordFunc {
	return func(ctx context.Context) (string, error) {
		tok, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{Scope}})
		if err != nil {
			return "", err
		}
		return tok.Token, nil
	}
}
