// Package servicebus is the queue of arr on an Azure Service Bus queue
// (the seed's queue), opened from azservicebus://NAMESPACE/QUEUE and
// authenticated with the process's DefaultAzureCredential
// (internal/azclient): no keys or connection strings. It holds a queue
// and no other port.
//
// # URL
//
//	azservicebus://myns.servicebus.windows.net/arr-work?max_deliveries=5&lease=2m
//
// NAMESPACE is the fully qualified namespace; a name without a dot gets
// ".servicebus.windows.net". Parameters: max_deliveries (default 0: the
// driver never dead-letters on its own count), lease (the lease of a
// Receive that asks for none, default 1m). Unknown parameters are
// errors.
//
// # The queue it needs
//
// The queue must exist: the driver creates nothing. It must have been
// created with duplicate detection (RequiresDuplicateDetection, which
// cannot be turned on later) and without sessions; OpenQueue reads the
// queue's properties and refuses one that does not fit. Its lock
// duration (5 s to 5 min) is read then too.
//
// # How the port maps onto Service Bus
//
//   - Lease: a peek-lock receive. A lease shorter than the lock ends with
//     AbandonMessage at the lease end. For a longer lease, the delivery's
//     keeper (a timer) renews the lock (RenewMessageLock) half a lock
//     duration after it was taken or last renewed, by this process's
//     clock, until Ack, Nak or Term, or until the lease ends, when it
//     abandons the message (dead-letters it at MaxDeliveries). A renewal
//     that fails for another reason than a lost lock is tried again
//     within a second; a lost lock ends the lease.
//   - InProgress: the lease's new end, and a RenewMessageLock at once.
//   - Ack: CompleteMessage. Term: DeadLetterMessage with the reason.
//   - Nak without a delay: AbandonMessage (DeliveryCount grows by one).
//     Nak with a delay: a copy of the message is scheduled for now+delay
//     (ScheduleMessages), carrying the ID and the attempts made in
//     application properties, then the original is completed. A failure
//     between the two leaves a duplicate (the original comes back when
//     its lock ends), never a loss. The copy's MessageID is the ID plus
//     "#" and the original's sequence number, not the ID: duplicate
//     detection would silently drop a copy with the ID while the ID is in
//     its window, and the completion would then have lost the message.
//   - Attempt: DeliveryCount plus the attempts a Nak's copy carries.
//   - Delay: a scheduled message. Stats.Delayed is ScheduledMessageCount.
//   - Dead letters: the queue's dead-letter subqueue; Stats.Dead is
//     DeadLetterMessageCount.
//   - MaxDeliveries (max_deliveries): the driver dead-letters a message
//     on a Nak or at its lease end once it has been delivered that many
//     times, and one received with a higher attempt (its leases ran out
//     in processes that died) instead of delivering it. Service Bus
//     counts on its own too: the queue's MaxDeliveryCount dead-letters a
//     Service Bus message (reason MaxDeliveryCountExceeded) whose lock
//     ran out or that was abandoned that many times, whatever the driver
//     says; a Nak's copy starts that count afresh. Give the queue a
//     MaxDeliveryCount above max_deliveries (or its maximum, when
//     max_deliveries is 0) so that the driver's count is the one that
//     decides.
//   - Message ID: the MessageID, under duplicate detection: a message
//     whose MessageID the queue saw within its detection window
//     (DuplicateDetectionHistoryTimeWindow, 20 s to 7 days, default
//     10 min) is dropped. So Enqueue is a no-op for an ID that is queued,
//     leased or delayed, but only within the window: an ID enqueued
//     longer ago than the window is enqueued again (a duplicate). And an
//     ID acked or dead-lettered within the window is dropped too, where
//     the port enqueues it afresh: arr's Retry of a failed operation, or
//     the janitor's sweep, enqueue it again once the window has passed.
//     A dead letter is not removed from the dead-letter subqueue when its
//     ID is enqueued again (Service Bus cannot remove one message by ID
//     without receiving the subqueue through); purge it yourself. Choose
//     a short window (a minute or two: long enough to cover a retried
//     send) to keep that delay short.
//   - Stats: the queue's runtime properties (the management API):
//     Service Bus counts locked messages as active, with the available
//     ones, and has no separate in-flight count, so InFlight is the
//     deliveries this Queue holds (at most ActiveMessageCount) and Ready
//     the rest of ActiveMessageCount. Messages locked by other processes
//     count as Ready.
//   - Close abandons every delivery the Queue holds, so that a queue
//     opened again gets them at once.
//
// Errors: a lost lock (the SDK's CodeLockLost) is driver.ErrLeaseLost;
// every Service Bus error is an *Error carrying the SDK's Code, and
// IsRetryable is true for CodeConnectionLost and CodeTimeout.
package servicebus
