package api

// The api's parsers, for the fuzz targets of package api_test.

func CheckPath(path, escaped string) string { return checkPath(path, escaped) }

// ParseHost returns the canonical Host form of s and whether it is valid
// and loopback.
func ParseHost(s string) (canonical string, ok, loopback bool) {
	h, ok := parseHost(s)
	return h.String(), ok, ok && isLoopback(h)
}

func ParsePrefer(values []string) (wait int64, async, bad bool) {
	p := parsePrefer(values)
	return p.wait, p.async, p.badWait
}

func IdempotencyKey(values []string) (string, error) { return idempotencyKey(values) }

const MaxWaitSeconds = maxWaitSeconds
