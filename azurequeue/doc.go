// Package azurequeue is arr's queue (queue/driver.Queue) on Azure Queue
// Storage, opened from azqueue:// URLs (see ParseURL), keyless: it
// authenticates with a Microsoft Entra token (internal/azclient's
// DefaultAzureCredential), needing the roles Storage Queue Data
// Contributor and Storage Table Data Contributor.
//
// # What maps to what
//
//   - A message is an Azure queue message that never expires (TTL -1); its
//     text carries the message ID and body (see codec.go).
//   - A lease is the message's visibility timeout, set by the dequeue;
//     InProgress and Nak(delay) are UpdateMessage (a new pop receipt);
//     Ack is DeleteMessage with the delivery's pop receipt. Azure counts
//     visibility in whole seconds: leases and delays are rounded up.
//   - Attempt is Azure's DequeueCount (less the dequeues that were not
//     deliveries, see below), so it survives a crash or a Close.
//   - Dead letters go to the queue NAME-poison (Azure Functions' name):
//     on Term, and on a Receive that takes a message delivered
//     MaxDeliveries times (or a Nak of its last delivery).
//   - Message.Delay is the visibility timeout of the enqueue. Azure caps
//     visibility at 7 days: a longer delay (or Nak) hides the message for
//     7 days and writes its due time into its text; a Receive that takes
//     it before then hides it again, for what remains or 7 days, counting
//     that dequeue in the text so that attempts stay exact.
//
// # The index
//
// Azure Queue Storage has neither dedup by ID nor exact counts by state
// (its approximate count mixes ready, delayed and leased messages, and it
// has no lookup by message). So each queue keeps an index in Azure Table
// Storage: one entity per message ID that is queued, leased or dead, in the
// partition named after the queue of one table (default "arrqueueindex",
// shared by every queue of the account: a table name cannot be derived
// from every queue name, a partition key can), holding its state, the
// Azure message's ID (in the queue, or in the poison queue), the time it
// is due or its lease ends, and its deliveries. The index is the truth of
// which message stands for an ID; every change of an entity is a
// conditional write on the ETag its writer read or wrote, which makes each
// transition atomic against a concurrent one:
//
//   - Enqueue writes the message, then inserts the entity. If the insert
//     finds the ID queued or leased, the new message is a duplicate and is
//     deleted; if it finds it dead, the entity is replaced (revived) and
//     the poison copy deleted.
//   - Receive dequeues, then reads the entity and replaces it (leased,
//     until the lease ends). A message whose ID is indexed with another
//     message, or is dead, is a leftover duplicate: it is deleted, not
//     delivered. A message whose ID is not indexed is indexed and delivered.
//   - Ack deletes the entity (if its ETag is still the one the delivery
//     wrote: else the message was delivered again, ErrLeaseLost), then
//     the message.
//   - Term writes the poison copy, then replaces the entity (dead), then
//     deletes the message.
//
// The order makes a crash between two writes lose nothing that was
// acknowledged: a crash inside Enqueue or Ack leaves a message without an
// entity (delivered, and indexed, by the next Receive that takes it: at
// least once); inside Term or a revival, a message whose entity names
// another (deleted when taken) or a stray poison copy (not counted). No
// crash leaves an entity without its message.
//
// Stats count the partition: dead entities as Dead, leased ones as
// InFlight until their lease ends, queued ones as Delayed until due, the
// rest as Ready (or Dead when delivered MaxDeliveries times: the next
// Receive dead-letters them). They are exact but for messages a crash left
// unindexed, and they read times from this machine's clock.
//
// # Limits
//
// A message's text is at most 64 KiB: about 48 KiB of ID and body after
// base64 (arr's messages are an operation ID and a route name). An ID is
// at most 384 bytes (the index keys it by its base64url, and a RowKey is
// at most 512 characters); Enqueue refuses longer ones. Receive
// polls (Azure has no push): from 50 ms, doubling to 1 s while the queue is
// empty, at once after an Enqueue in the same process. A lease or delay
// ends for Stats up to a second before Azure shows the message again.
// Each message costs seven requests through enqueue, receive and ack
// (three queue, four table). Stats cost one request per 1,000 messages
// indexed (queued, leased or dead): cheap for thousands, seconds for
// hundreds of thousands.
package azurequeue
