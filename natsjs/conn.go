package natsjs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Config is what a nats:// URL says; see the package documentation.
type Config struct {
	// Servers are the client URLs to connect to, e.g. "nats://127.0.0.1:4222".
	Servers []string
	// User and Password, or Token (a user without a password), from the
	// URL's user information; CredsFile from ?creds=.
	User, Password, Token, CredsFile string
	// Prefix names the streams and buckets (default "arr").
	Prefix string
	// Replicas of every stream and bucket created (default 1).
	Replicas int
	// AckWait is the queue's default lease and the server's redelivery
	// timeout after a holder dies (default 30s).
	AckWait time.Duration
	// MaxDeliveries dead-letters a queue message after that many
	// deliveries (0: never).
	MaxDeliveries int
	// TLS settings, from ?tls_ca=, ?tls_cert=, ?tls_key= and
	// ?tls_required= (or the tls:// scheme, which requires TLS):
	// TLSCAFile is a PEM file of the CAs that verify the servers'
	// certificates (default: the system's); TLSCertFile and TLSKeyFile
	// are a client certificate and its key (both or neither);
	// TLSRequired refuses a connection without TLS. Any of them makes
	// the connection require TLS.
	TLSCAFile, TLSCertFile, TLSKeyFile string
	TLSRequired                        bool
}

// usesTLS reports whether c connects with TLS.
func (c Config) usesTLS() bool {
	return c.TLSRequired || c.TLSCAFile != "" || c.TLSCertFile != ""
}

// tlsConfig builds the TLS client configuration of c: TLS 1.2 or later,
// servers verified against TLSCAFile (or the system's roots), and the
// client certificate, if any.
func (c Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("natsjs: tls_ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("natsjs: tls_ca %s holds no PEM certificate", c.TLSCAFile)
		}
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			// Its errors name the files, never the key.
			return nil, fmt.Errorf("natsjs: tls_cert/tls_key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

const (
	defaultPrefix  = "arr"
	defaultAckWait = 30 * time.Second
)

// ParseURL reads a nats:// URL into a Config.
func ParseURL(u *url.URL) (Config, error) {
	c := Config{Prefix: defaultPrefix, Replicas: 1, AckWait: defaultAckWait}
	if u.Scheme != "nats" && u.Scheme != "tls" {
		return c, fmt.Errorf("natsjs: scheme %q, want nats or tls", u.Scheme)
	}
	c.TLSRequired = u.Scheme == "tls"
	if u.Host == "" {
		return c, fmt.Errorf("natsjs: no servers in %q", u.Redacted())
	}
	for _, h := range strings.Split(u.Host, ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.Servers = append(c.Servers, "nats://"+h)
		}
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			c.User, c.Password = u.User.Username(), p
		} else {
			c.Token = u.User.Username()
		}
	}
	q := u.Query()
	for k, vs := range q {
		v := vs[len(vs)-1]
		var err error
		switch k {
		case "prefix":
			if !safeName(v) {
				err = fmt.Errorf("prefix %q: want letters, digits, '-' and '_'", v)
			}
			c.Prefix = v
		case "replicas":
			c.Replicas, err = strconv.Atoi(v)
			if err == nil && (c.Replicas < 1 || c.Replicas > 5) {
				err = fmt.Errorf("replicas %d: want 1 to 5", c.Replicas)
			}
		case "ackWait", "defaultLease":
			c.AckWait, err = time.ParseDuration(v)
			if err == nil && c.AckWait < 100*time.Millisecond {
				err = fmt.Errorf("%s %v: want at least 100ms", k, c.AckWait)
			}
		case "maxDeliveries":
			c.MaxDeliveries, err = strconv.Atoi(v)
			if err == nil && c.MaxDeliveries < 0 {
				err = fmt.Errorf("maxDeliveries %d: want >= 0", c.MaxDeliveries)
			}
		case "creds":
			c.CredsFile = v
		case "tls_ca":
			c.TLSCAFile = v
		case "tls_cert":
			c.TLSCertFile = v
		case "tls_key":
			c.TLSKeyFile = v
		case "tls_required":
			var req bool
			req, err = strconv.ParseBool(v)
			c.TLSRequired = c.TLSRequired || req
			if err == nil && !req && u.Scheme == "tls" {
				err = fmt.Errorf("tls_required=%s with the tls:// scheme, which requires TLS", v)
			}
		default:
			err = fmt.Errorf("unknown parameter %q", k)
		}
		if err != nil {
			return c, fmt.Errorf("natsjs: %s: %w", u.Redacted(), err)
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return c, fmt.Errorf("natsjs: %s: tls_cert and tls_key go together", u.Redacted())
	}
	return c, nil
}

func safeName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// token encodes s as one subject token or KV key token: s itself when it
// is made of letters, digits, '-' and '_', else "=" and its unpadded
// base64url form (which never collides with the first kind).
func token(s string) string {
	if safeName(s) {
		return s
	}
	return "=" + base64.RawURLEncoding.EncodeToString([]byte(s))
}

// untoken reverses token.
func untoken(t string) (string, error) {
	if strings.HasPrefix(t, "=") {
		b, err := base64.RawURLEncoding.DecodeString(t[1:])
		return string(b), err
	}
	return t, nil
}

// connEntry is a connection shared by every driver opened by URL with
// the same servers and credentials in this process.
type connEntry struct {
	key  string
	nc   *nats.Conn
	refs int

	mu        sync.Mutex
	listeners map[int]func()
	nextL     int
}

// onReconnect registers f to run after every reconnect; the returned func
// unregisters it.
func (e *connEntry) onReconnect(f func()) func() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.listeners == nil {
		e.listeners = map[int]func(){}
	}
	id := e.nextL
	e.nextL++
	e.listeners[id] = f
	return func() {
		e.mu.Lock()
		delete(e.listeners, id)
		e.mu.Unlock()
	}
}

func (e *connEntry) reconnected() {
	e.mu.Lock()
	fs := make([]func(), 0, len(e.listeners))
	for _, f := range e.listeners {
		fs = append(fs, f)
	}
	e.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

var (
	connsMu sync.Mutex
	conns   = map[string]*connEntry{}
)

// acquire returns the shared connection for c, connecting when this
// process has none yet, and the function that releases it (the last
// release closes it).
func acquire(ctx context.Context, c Config) (*connEntry, func(), error) {
	key := strings.Join([]string{strings.Join(c.Servers, ","), c.User, c.Password, c.Token, c.CredsFile,
		c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile, strconv.FormatBool(c.usesTLS())}, "|")
	connsMu.Lock()
	defer connsMu.Unlock()
	e := conns[key]
	if e == nil {
		e = &connEntry{key: key}
		nc, err := connect(ctx, c, e)
		if err != nil {
			return nil, nil, err
		}
		e.nc = nc
		conns[key] = e
	}
	e.refs++
	var once sync.Once
	return e, func() {
		once.Do(func() {
			connsMu.Lock()
			defer connsMu.Unlock()
			e.refs--
			if e.refs == 0 {
				delete(conns, key)
				e.nc.Close()
			}
		})
	}, nil
}

// connect dials the servers. The connection reconnects forever; a
// reconnect wakes every Watch of the stores over it.
func connect(ctx context.Context, c Config, e *connEntry) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("arr"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.ReconnectHandler(func(*nats.Conn) { e.reconnected() }),
	}
	if dl, ok := ctx.Deadline(); ok {
		opts = append(opts, nats.Timeout(time.Until(dl)))
	}
	switch {
	case c.User != "":
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	case c.Token != "":
		opts = append(opts, nats.Token(c.Token))
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.usesTLS() {
		tc, err := c.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	nc, err := nats.Connect(strings.Join(c.Servers, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("natsjs: connecting to %s: %w", strings.Join(c.Servers, ","), err)
	}
	return nc, nil
}
