// Package urlmux holds what the engines' URL openers share.
package urlmux

import "net/url"

// Path returns the file-system path a URL names: "embedded:./data" (opaque),
// "embedded:///abs/data" and "embedded://./data" all work.
func Path(u *url.URL) string {
	switch {
	case u.Opaque != "":
		return u.Opaque
	case u.Host != "" && u.Host != "localhost":
		return u.Host + u.Path
	default:
		return u.Path
	}
}
