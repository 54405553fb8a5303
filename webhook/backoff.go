package webhook

import (
	"math/rand/v2"
	"time"
)

// Retry defaults, for the delivery loop. With them the delays after the
// first attempts are about 5 s, 10 s, 20 s, … (each between half and all of
// that, at random); the base reaches DefaultMaxBackoff after the tenth
// attempt, some 1 to 1.4 h after the first; then attempts come every 30 to
// 60 minutes until DefaultMaxAge: about 40 attempts in all.
const (
	// DefaultMinBackoff is the delay before the second attempt, at most.
	DefaultMinBackoff = 5 * time.Second
	// DefaultMaxBackoff caps the delay between two attempts, a
	// Retry-After included.
	DefaultMaxBackoff = time.Hour
	// DefaultMaxAge is how long after the event a callback is still
	// attempted; then it fails for good.
	DefaultMaxAge = 24 * time.Hour
)

// Backoff is an exponential retry schedule with jitter. The zero value uses
// DefaultMinBackoff and DefaultMaxBackoff.
type Backoff struct {
	// Min is the base delay, after the first attempt. Default:
	// DefaultMinBackoff.
	Min time.Duration
	// Max caps every delay. Default: DefaultMaxBackoff.
	Max time.Duration
}

// Delay is how long to wait after attempt number attempt (1 for the first)
// failed, when its answer asked for retryAfter (0: did not ask). The base
// is Min·2^(attempt-1), capped at Max; the delay is chosen at random between
// half the base and the base ("equal jitter": retries spread out, and none
// comes sooner than half the schedule); then it is raised to retryAfter when
// that is longer, retryAfter itself capped at Max. So Delay is always within
// [min(Min,Max)/2, Max] and never shorter than min(retryAfter, Max).
func (b Backoff) Delay(attempt int, retryAfter time.Duration) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	base := min(lo, hi)
	for i := 1; i < attempt && base < hi; i++ {
		if base > hi/2 {
			base = hi
			break
		}
		base *= 2
	}
	half := base / 2
	d := half + rand.N(base-half+1)
	return max(d, min(retryAfter, hi))
}
