// Package webhook holds the self-contained pieces of arr's callbacks: the
// Standard Webhooks signature (Sign, Verify and the whsec_ secrets), the
// CloudEvents 1.0 envelope (Event), the rule on where a callback may go
// (AllowList, CheckURL, IsPublic), the HTTP sender that enforces that rule on
// the address it actually dials (Sender), and the retry schedule (Backoff).
//
// It knows nothing of arr's core: the delivery loop, the outbox and the
// secrets' storage are the core's. What it guarantees:
//
//   - A signature is HMAC-SHA256 over "id.timestamp.body", as the Standard
//     Webhooks specification (1.0.0) defines it, and verifies with any
//     implementation of that specification.
//   - Verify compares in constant time, refuses a timestamp outside its
//     tolerance, and accepts a header carrying several signatures when any
//     one of them is good (secret rotation).
//   - A Sender never connects to a loopback, private, link-local, metadata
//     or otherwise non-public address unless an exact AllowList entry exempts
//     the target; it resolves the name itself, checks every address, and
//     dials exactly the checked address (a DNS answer that changes between
//     check and dial cannot move it). It uses no proxy and follows no
//     redirect, and at most Config.MaxPerDestination requests are in flight
//     to one host:port at a time.
//   - The errors it reports are safe to show to the operation's owner: they
//     name the target, never an address of arr's own network.
package webhook
