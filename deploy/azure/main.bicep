// arr on Azure: the seed's walk-through (docs/azure.md) on Azure Container Apps.
//
// NOT DEPLOYED FROM THE MACHINES IT WAS WRITTEN ON: nothing there compiles
// Bicep or reaches Azure. Each resource type and apiVersion was checked
// against the seed's own Bicep (mspnp/cloud-design-patterns,
// async-request-reply/deploy.bicep) or public templates using the same
// version; run `az bicep build -f main.bicep` and a what-if before you rely
// on it, and report what fails.
//
// What it makes, all keyless (no account key, connection string or
// password anywhere):
//   - a user-assigned managed identity: arr's only credential (AZURE_CLIENT_ID);
//   - a storage account with shared keys disabled, as the seed's, and a blob
//     container for results (-results azblob://…); with queue = 'storage',
//     an Azure Queue Storage queue (-queue azqueue://…);
//   - with queue = 'servicebus', the seed's Service Bus namespace and queue
//     `outqueue` (-queue azservicebus://…), on the Standard tier: arr needs
//     duplicate detection, which Basic (the seed's tier) lacks;
//   - Azure Database for PostgreSQL flexible server, Microsoft Entra
//     authentication only, for the operations store (-store postgres://…
//     &auth=entra); with queue = 'postgres' (the default) it is the queue too;
//   - role assignments for the identity (docs/azure.md lists them and why);
//   - a Container Apps environment and app running the arr image.

@description('Region of every resource.')
param location string = resourceGroup().location

@description('The arr image, e.g. myregistry.azurecr.io/arr:v1.2.3 (make image; crane push dist/arr-image REF).')
param image string

@description('Azure Container Registry in this resource group holding the image (the identity gets AcrPull on it and pulls with it). Empty: the image is public.')
param registryName string = ''

@description('Where arr queues work: the PostgreSQL store itself, Azure Queue Storage, or the seed\'s Service Bus queue.')
@allowed([
  'postgres'
  'storage'
  'servicebus'
])
param queue string = 'postgres'

@description('API key file for arr (lines `name:key`, docs/auth.md), mounted as a secret file. Required unless allowAnonymous.')
@secure()
param apiKeys string = ''

@description('Serve every caller anonymously (arr -insecure-no-auth), as the seed\'s functions did: anyone who finds the URL can submit work and read every operation. For a demonstration only.')
param allowAnonymous bool = false

var suffix = uniqueString(subscription().subscriptionId, resourceGroup().id)
var identityName = 'id-arr-${suffix}'
var storageName = toLower('stoarr${suffix}')
var serviceBusName = 'sb-arr-${suffix}'
var pgName = 'pg-arr-${suffix}'
var envName = 'cae-arr-${suffix}'
var appName = 'ca-arr-${take(suffix, 10)}'
var resultsContainer = 'results'
var storageQueueName = 'arr-work'
var serviceBusQueueName = 'outqueue' // the seed's

// Built-in role definition IDs (docs/azure.md says where each was checked).
var roles = {
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  storageBlobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  acrPull: '7f951dda-4ed3-4680-a7ca-43fe172d538d'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
}

resource registry 'Microsoft.ContainerRegistry/registries@2023-07-01' existing = if (!empty(registryName)) {
  name: registryName
}

resource acrPull 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(registryName)) {
  name: guid(registry.id, identity.id, roles.acrPull)
  scope: registry
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.acrPull)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---- Storage: results (and the queue with queue = 'storage') ----

resource storage 'Microsoft.Storage/storageAccounts@2023-01-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false // as the seed: Entra identities only; SAS URLs are user delegation SAS
    allowBlobPublicAccess: false
    supportsHttpsTrafficOnly: true
    minimumTlsVersion: 'TLS1_2'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-01-01' = {
  parent: storage
  name: 'default'
}

resource results 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-01-01' = {
  parent: blobService
  name: resultsContainer
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-01-01' = if (queue == 'storage') {
  parent: storage
  name: 'default'
}

resource storageQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-01-01' = if (queue == 'storage') {
  parent: queueService
  name: storageQueueName
}

// Read, write and delete results: on the results container only.
resource blobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(results.id, identity.id, roles.storageBlobDataContributor)
  scope: results
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// User delegation keys (to sign the results' SAS URLs) are asked of the
// account: Storage Blob Delegator holds only that action.
resource blobDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, roles.storageBlobDelegator)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDelegator)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (queue == 'storage') {
  name: guid(storage.id, identity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// The azqueue driver keeps an index of its messages in Table Storage.
resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (queue == 'storage') {
  name: guid(storage.id, identity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---- Service Bus (queue = 'servicebus'): the seed's namespace and queue ----

resource serviceBus 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = if (queue == 'servicebus') {
  name: serviceBusName
  location: location
  sku: {
    name: 'Standard' // duplicate detection; the seed's Basic has none
    tier: 'Standard'
  }
  properties: {
    disableLocalAuth: true // no SAS keys: Entra identities only
  }
}

resource serviceBusQueue 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = if (queue == 'servicebus') {
  parent: serviceBus
  name: serviceBusQueueName
  properties: {
    requiresDuplicateDetection: true // arr refuses a queue without it (docs/scale-out.md)
    duplicateDetectionHistoryTimeWindow: 'PT2M'
    lockDuration: 'PT1M'
    maxDeliveryCount: 100
  }
}

// The seed's two roles, on the namespace as the seed assigns them.
resource serviceBusSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (queue == 'servicebus') {
  name: guid(serviceBus.id, identity.id, roles.serviceBusDataSender)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataSender)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource serviceBusReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (queue == 'servicebus') {
  name: guid(serviceBus.id, identity.id, roles.serviceBusDataReceiver)
  scope: serviceBus
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.serviceBusDataReceiver)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// ---- PostgreSQL: the operations store, Entra authentication only ----

resource pg 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: pgName
  location: location
  sku: {
    name: 'Standard_B1ms'
    tier: 'Burstable'
  }
  properties: {
    version: '16'
    storage: {
      storageSizeGB: 32
    }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: tenant().tenantId
    }
    network: {
      publicNetworkAccess: 'Enabled'
    }
  }
}

// Container Apps without a virtual network reach the server over its public
// endpoint: this rule admits connections from Azure (any tenant's; Entra
// authentication and TLS still apply). A private endpoint is the way out.
resource pgAllowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = {
  parent: pg
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

resource pgDatabase 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2024-08-01' = {
  parent: pg
  name: 'arr'
  dependsOn: [pgAllowAzure] // a flexible server takes one change at a time
}

// The identity as the server's Entra administrator: the shortest way to a
// role arr can log in as (named as the identity) and create its tables
// with. It is broad; docs/azure.md shows the narrower way.
resource pgAdmin 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = {
  parent: pg
  name: identity.properties.principalId
  properties: {
    principalName: identity.name
    principalType: 'ServicePrincipal'
    tenantId: tenant().tenantId
  }
  dependsOn: [pgDatabase, pgAllowAzure]
}

// ---- Container Apps: arr serve ----

resource env 'Microsoft.App/managedEnvironments@2024-03-01' = {
  name: envName
  location: location
  properties: {}
}

var publicURL = 'https://${appName}.${env.properties.defaultDomain}'
var storeURL = 'postgres://${identity.name}@${pg.properties.fullyQualifiedDomainName}/arr?sslmode=verify-full&auth=entra'
var storageQueueArgs = ['-queue', 'azqueue://${storageQueueName}?account=${storage.name}']
var serviceBusQueueArgs = ['-queue', 'azservicebus://${serviceBusName}.servicebus.windows.net/${serviceBusQueueName}']
var queueArgs = queue == 'storage' ? storageQueueArgs : (queue == 'servicebus' ? serviceBusQueueArgs : [])
var authArgs = allowAnonymous ? ['-insecure-no-auth'] : []

resource app 'Microsoft.App/containerApps@2024-03-01' = {
  name: appName
  location: location
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    managedEnvironmentId: env.id
    configuration: {
      activeRevisionsMode: 'Single'
      ingress: {
        external: true
        targetPort: 8080
        transport: 'auto'
        allowInsecure: false
      }
      registries: empty(registryName) ? [] : [
        {
          server: registry.properties.loginServer
          identity: identity.id
        }
      ]
      secrets: allowAnonymous ? [] : [
        {
          name: 'api-keys'
          value: apiKeys
        }
      ]
    }
    template: {
      containers: [
        {
          name: 'arr'
          image: image
          // The image's Entrypoint is /arr; these replace its Cmd (which
          // has -insecure-no-auth for `docker run` on a laptop).
          args: concat([
            'serve'
            '-addr'
            '0.0.0.0:8080'
            '-data'
            '/data'
            '-public-url'
            publicURL
            '-store'
            storeURL
            '-results'
            'azblob://${resultsContainer}?account=${storage.name}'
          ], queueArgs, authArgs)
          env: concat([
            {
              name: 'AZURE_CLIENT_ID' // DefaultAzureCredential picks the user-assigned identity by it
              value: identity.properties.clientId
            }
          ], allowAnonymous ? [] : [
            {
              name: 'ARR_API_KEYS'
              value: '/run/arr/api-keys'
            }
          ])
          volumeMounts: allowAnonymous ? [] : [
            {
              volumeName: 'api-keys'
              mountPath: '/run/arr'
            }
          ]
          resources: {
            cpu: json('0.5')
            memory: '1Gi'
          }
          probes: [
            {
              type: 'Liveness'
              httpGet: {
                path: '/healthz'
                port: 8080
              }
            }
            {
              type: 'Readiness'
              httpGet: {
                path: '/readyz'
                port: 8080
              }
            }
          ]
        }
      ]
      volumes: allowAnonymous ? [] : [
        {
          name: 'api-keys'
          storageType: 'Secret'
          secrets: [
            {
              secretRef: 'api-keys'
              path: 'api-keys'
            }
          ]
        }
      ]
      scale: {
        minReplicas: 1 // the workers run in the same process: at zero replicas queued work would wait
        maxReplicas: 3
      }
    }
  }
  // The roles must hold before arr starts: it fetches a user delegation key
  // and connects to PostgreSQL at start, and stops if it cannot.
  dependsOn: [
    acrPull
    blobContributor
    blobDelegator
    queueContributor
    tableContributor
    serviceBusSender
    serviceBusReceiver
    serviceBusQueue
    storageQueue
    pgAdmin
  ]
}

output appName string = app.name
output appURL string = publicURL
output identityClientId string = identity.properties.clientId
output storageAccount string = storage.name
output postgresServer string = pg.properties.fullyQualifiedDomainName
