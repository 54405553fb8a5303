package main

// The engines this binary links: each registers the URL schemes it opens.
// The library imports none of them; a program that embeds arr imports the
// ones it uses.
import (
	_ "github.com/arrhq/arr/azurequeue"               // azqueue://
	_ "github.com/arrhq/arr/embedded"                 // embedded:
	_ "github.com/arrhq/arr/natsjs"                   // nats://
	_ "github.com/arrhq/arr/postgres"                 // postgres://, postgresql://
	_ "github.com/arrhq/arr/postgres/entra"           // postgres://…?auth=entra (Azure, keyless)
	_ "github.com/arrhq/arr/resultstore/azblobresult" // azblob://
	_ "github.com/arrhq/arr/resultstore/fileresult"   // file:
	_ "github.com/arrhq/arr/resultstore/s3result"     // s3://
	_ "github.com/arrhq/arr/servicebus"               // azservicebus://
)
