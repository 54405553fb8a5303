package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	arr "github.com/arrhq/arr"
	"github.com/arrhq/arr/internal/trustedproxy"
	"github.com/arrhq/arr/webhook"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// Error is one problem in a configuration file. Its text is
// "file:line: key: message", e.g.
//
//	arr.yaml:12: routes[1].timeout: "10x" is not a duration (use e.g. 30s, 10m, 24h, 7d)
type Error struct {
	File string // the file's name
	Line int    // 1-based; 0 when not known
	Key  string // the key's path, e.g. routes[1].timeout; "" for the file as a whole
	Msg  string // what is wrong
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads the file at path and parses it; see Parse.
func Load(path string, knownGo []string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, knownGo)
}

// Parse parses data, the contents of the config file name, and checks it.
// knownGo are the names of the Go handlers the program registers (nil:
// none): a route's handler must be echo, forward, exec or one of them.
//
// Parse fills in what the file leaves to it: each route's Name, Method,
// Line and MediaTypes defaults, and its compiled schema (see
// Route.Validate); it resolves relative schemaFile and exec.dir paths
// against name's directory. It reads schemaFile files, and nothing else.
//
// On error the File is nil and the error holds every problem found, one
// *Error per line, joined with errors.Join; syntax errors stop the parse
// at the first.
func Parse(name string, data []byte, knownGo []string) (*File, error) {
	p := &parser{
		name: name, knownGo: knownGo,
		nodes: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{},
		keyLines: map[int][]entry{}, valLines: map[int][]entry{},
		bad: map[string]bool{},
	}
	f := &File{Path: name}
	p.f = f

	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return f, nil // an empty file: nothing set
		}
		return nil, p.syntaxError(err, data)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, p.syntaxError(err, data)
		}
		return nil, &Error{File: name, Line: extra.Line, Msg: "a config file holds one YAML document; remove the ---"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.ShortTag() == "!!null" {
		return f, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &Error{File: name, Line: root.Line,
			Msg: fmt.Sprintf("the config must be a mapping of server:, defaults: and routes:, not %s", describeNode(root))}
	}
	p.index("", nil, root)

	sd := yaml.NewDecoder(bytes.NewReader(data))
	sd.KnownFields(true)
	if err := sd.Decode(f); err != nil {
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			return nil, p.syntaxError(err, data)
		}
		for _, msg := range te.Errors {
			p.decodeError(msg)
		}
	}
	f.Path = name

	p.checkServer()
	p.checkAuth()
	p.checkSettings("defaults", &f.Defaults)
	p.checkBackoff("defaults", f.Defaults)
	if p.matchRoutes() {
		ok := make([]bool, len(f.Routes))
		names := map[string]int{}
		for i := range f.Routes {
			ok[i] = p.checkRoute(i, names)
		}
		p.checkConflicts(ok)
	}

	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *Error) int { return a.Line - b.Line })
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	return f, nil
}

type entry struct {
	path     string
	key, val *yaml.Node
}

type parser struct {
	name    string
	f       *File
	knownGo []string

	nodes    map[string]*yaml.Node // key path → value node
	keys     map[string]*yaml.Node // key path → key node (members of mappings)
	keyLines map[int][]entry       // line → the mapping keys on it
	valLines map[int][]entry       // line → the values that start on it
	bad      map[string]bool       // key paths that failed to decode
	routeAt  []string              // File.Routes[i]'s key path, e.g. routes[2]

	errs []*Error
}

// index records every node of the document under its key path:
// server.addr, routes[1].timeout, routes[0].exec.command[2].
func (p *parser) index(path string, key, n *yaml.Node) {
	if _, dup := p.nodes[path]; !dup {
		p.nodes[path] = n
		if key != nil {
			p.keys[path] = key
		}
	}
	e := entry{path, key, n}
	if key != nil {
		p.keyLines[key.Line] = append(p.keyLines[key.Line], e)
	}
	p.valLines[n.Line] = append(p.valLines[n.Line], e)
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.ShortTag() == "!!merge" {
				continue
			}
			p.index(join(path, k.Value), k, v)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p.index(path+"["+strconv.Itoa(i)+"]", nil, c)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func parent(path string) string {
	i := max(strings.LastIndexByte(path, '.'), strings.LastIndexByte(path, '['))
	if i < 0 {
		return ""
	}
	return path[:i]
}

// lineOf is the line of path's key, or of its nearest ancestor in the file.
func (p *parser) lineOf(path string) int {
	for {
		if k := p.keys[path]; k != nil {
			return k.Line
		}
		if n := p.nodes[path]; n != nil {
			return n.Line
		}
		if path == "" {
			return 0
		}
		path = parent(path)
	}
}

// has reports whether the file sets path.
func (p *parser) has(path string) bool { return p.nodes[path] != nil }

func (p *parser) isNull(path string) bool {
	n := p.nodes[path]
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// errorf records a problem with the key at path, unless it or an ancestor
// already failed to decode.
func (p *parser) errorf(path, format string, args ...any) {
	p.errorAt(p.lineOf(path), path, format, args...)
}

func (p *parser) errorAt(line int, path, format string, args ...any) {
	for q := path; q != ""; q = parent(q) {
		if p.bad[q] {
			return
		}
	}
	p.errs = append(p.errs, &Error{File: p.name, Line: line, Key: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (?:column (\d+): )?(?s)(.*)$`)
	unknownRE  = regexp.MustCompile(`^field (.*) not found in type (\S+)$`)
	cannotRE   = regexp.MustCompile("^cannot unmarshal (!\\S*)(?: `(.*)`)? into (.+)$")
	dupKeyRE   = regexp.MustCompile(`^mapping key (".*") already defined at line (\d+)$`)
)

// decodeError turns one of yaml.v3's "line N: ..." decoding messages into
// an *Error naming the key.
func (p *parser) decodeError(msg string) {
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		p.errs = append(p.errs, &Error{File: p.name, Msg: msg})
		return
	}
	line, _ := strconv.Atoi(m[1])
	text := m[3]
	fail := func(path, msg string) {
		p.errs = append(p.errs, &Error{File: p.name, Line: line, Key: path, Msg: msg})
		if path != "" {
			p.bad[path] = true
		}
		// yaml.v3 leaves a list's bad items out, so the others' indexes
		// shift: stop checking the list (but for routes, see matchRoutes).
		if strings.HasSuffix(path, "]") && parent(path) != "routes" {
			p.bad[parent(path)] = true
		}
	}
	if m[2] != "" { // our own types' errors carry the column
		col, _ := strconv.Atoi(m[2])
		fail(p.valueAt(line, func(e entry) bool { return e.val.Column == col }), text)
		return
	}
	if um := unknownRE.FindStringSubmatch(text); um != nil {
		key, typ := um[1], um[2]
		path := ""
		for _, e := range p.keyLines[line] {
			if e.key.Value == key {
				path = e.path
				break
			}
		}
		p.errs = append(p.errs, &Error{File: p.name, Line: line, Key: parent(path),
			Msg: fmt.Sprintf("unknown key %q%s", key, suggest(typ, key))})
		return
	}
	if cm := cannotRE.FindStringSubmatch(text); cm != nil {
		tag, val, into := cm[1], cm[2], cm[3]
		var found *yaml.Node
		path := p.valueAt(line, func(e entry) bool {
			switch tag {
			case "!!seq":
				return e.val.Kind == yaml.SequenceNode
			case "!!map":
				return e.val.Kind == yaml.MappingNode
			}
			if e.val.Kind != yaml.ScalarNode {
				return false
			}
			if pre, cut := strings.CutSuffix(val, "..."); cut {
				return strings.HasPrefix(e.val.Value, pre)
			}
			return e.val.Value == val
		})
		if n := p.nodes[path]; n != nil {
			found = n
		}
		want := describeType(into)
		switch {
		case found != nil && found.Kind == yaml.ScalarNode:
			fail(path, fmt.Sprintf("%q is not %s", found.Value, want))
		case tag == "!!seq":
			fail(path, "want "+want+", got a list")
		case tag == "!!map":
			fail(path, "want "+want+", got a mapping")
		default:
			fail(path, fmt.Sprintf("%q is not %s", val, want))
		}
		return
	}
	if dm := dupKeyRE.FindStringSubmatch(text); dm != nil {
		key, err := strconv.Unquote(dm[1])
		if err != nil {
			key = dm[1]
		}
		path := ""
		for _, e := range p.keyLines[line] {
			if e.key.Value == key {
				path = parent(e.path)
			}
		}
		p.errs = append(p.errs, &Error{File: p.name, Line: line, Key: path,
			Msg: fmt.Sprintf("%q is set twice (first at line %s)", key, dm[2])})
		if path != "" {
			p.bad[path] = true // yaml.v3 leaves the whole mapping out
		}
		return
	}
	p.errs = append(p.errs, &Error{File: p.name, Line: line, Msg: text})
}

// valueAt returns the path of the first value on line that match accepts,
// or of the first value on line.
func (p *parser) valueAt(line int, match func(entry) bool) string {
	es := p.valLines[line]
	for _, e := range es {
		if match(e) {
			return e.path
		}
	}
	if len(es) > 0 {
		return es[0].path
	}
	return ""
}

func describeType(t string) string {
	t = strings.TrimPrefix(t, "*")
	if elem, ok := strings.CutPrefix(t, "[]"); ok {
		switch strings.TrimPrefix(elem, "*") {
		case "string":
			return "a list of strings"
		case "int", "int64":
			return "a list of whole numbers"
		case "config.Route":
			return "a list of routes"
		}
		return "a list"
	}
	switch t {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "a whole number"
	case "float32", "float64":
		return "a number"
	case "config.Duration":
		return "a duration"
	case "config.ByteSize":
		return "a size"
	case "map[string]string":
		return "a mapping of names to strings"
	}
	if strings.HasPrefix(t, "map[") || strings.HasPrefix(t, "config.") {
		return "a mapping"
	}
	return t
}

// keysOf are the YAML keys of the file's mapping types, by Go type name.
var keysOf = map[string][]string{}

func init() {
	for _, v := range []any{File{}, Server{}, RouteSettings{}, Route{}, Forward{}, Exec{}} {
		t := reflect.TypeOf(v)
		keysOf[t.String()] = yamlKeys(t)
	}
}

func yamlKeys(t reflect.Type) []string {
	var keys []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if opts == "inline" {
			keys = append(keys, yamlKeys(f.Type)...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		keys = append(keys, name)
	}
	return keys
}

// suggest names the key meant by an unknown one, or lists the known ones.
func suggest(typ, key string) string {
	known := keysOf[typ]
	if len(known) == 0 {
		return ""
	}
	norm := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s))
	}
	best, bestD := "", 3
	for _, k := range known {
		if norm(k) == norm(key) {
			best, bestD = k, 0
			break
		}
		if d := levenshtein(strings.ToLower(k), strings.ToLower(key)); d < bestD {
			best, bestD = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (known keys: " + strings.Join(known, ", ") + ")"
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// syntaxError turns a yaml.v3 parse error into an *Error.
func (p *parser) syntaxError(err error, data []byte) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0 // yaml.v3 counts lines from 0, leaves out line 0, and adds 1 for scanner errors only
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[3]
	}
	lines := strings.Split(string(data), "\n")
	switch {
	case strings.HasPrefix(msg, "did not find expected") || strings.HasPrefix(msg, "found duplicate") ||
		strings.HasPrefix(msg, "found incompatible") || strings.HasPrefix(msg, "found undefined tag"):
		line++ // a parser error: yaml.v3 gives the 0-based line where the construct began
	case strings.HasPrefix(msg, "unknown anchor"):
		_, name, _ := strings.Cut(msg, "'")
		name, _, _ = strings.Cut(name, "'")
		for i, l := range lines {
			if strings.Contains(l, "*"+name) {
				line = i + 1
				break
			}
		}
	case line == 0:
		line = 1
	}
	if strings.Contains(msg, "tab") || strings.Contains(msg, "cannot start any token") {
		// yaml.v3 may name the line before the tab's.
		for i := max(line-2, 0); i < len(lines); i++ {
			l := lines[i]
			indent := l[:len(l)-len(strings.TrimLeft(l, " \t-"))]
			if strings.Contains(indent, "\t") {
				line, msg = i+1, "a tab in the indentation: YAML indents with spaces only"
				break
			}
		}
	}
	return &Error{File: p.name, Line: line, Msg: "YAML syntax: " + msg}
}

// checkServer checks the server block.
func (p *parser) checkServer() {
	s := &p.f.Server
	if s.Addr != "" {
		if _, _, err := net.SplitHostPort(s.Addr); err != nil {
			p.errorf("server.addr", "%q is not a host:port address (e.g. 127.0.0.1:8080 or :8080)", s.Addr)
		}
	}
	if s.AdminAddr != "" {
		if _, _, err := net.SplitHostPort(s.AdminAddr); err != nil {
			p.errorf("server.adminAddr", "%q is not a host:port address (e.g. 127.0.0.1:9090)", s.AdminAddr)
		}
	}
	if s.PublicURL != "" {
		if msg := checkHTTPURL(s.PublicURL); msg != "" {
			p.errorf("server.publicURL", "%s", msg)
		} else if u, _ := url.Parse(s.PublicURL); u.RawQuery != "" || u.Fragment != "" {
			p.errorf("server.publicURL", "%q: a public URL has no query or fragment", s.PublicURL)
		}
	}
	for i, v := range s.TrustedProxies {
		if _, err := trustedproxy.Parse(v); err != nil || strings.TrimSpace(v) == "" {
			p.errorf("server.trustedProxies["+strconv.Itoa(i)+"]", "%q is not an IP address or CIDR prefix (e.g. 10.0.0.0/8)", v)
		}
	}
	for _, k := range []struct {
		key, val string
	}{{"store", s.Store}, {"queue", s.Queue}, {"results", s.Results}} {
		if k.val == "" {
			continue
		}
		if u, err := url.Parse(k.val); err != nil || u.Scheme == "" {
			p.errorf("server."+k.key, "%q is not a URL (e.g. embedded:arr-data/db)", k.val)
		}
	}
	if s.Workers != nil && *s.Workers < -1 {
		p.errorf("server.workers", "must be -1 (no workers), 0 (the default) or more, not %d", *s.Workers)
	}
	p.positive("server.maxBody", int64(s.MaxBody))
	p.positive("server.maxQueue", s.MaxQueue)
	p.positive("server.resultURLTTL", int64(s.ResultURLTTL))
	p.positive("server.syncWait", int64(s.SyncWait))
	p.positive("server.maxWait", int64(s.MaxWait))
	p.positive("server.shutdownGrace", int64(s.ShutdownGrace))
	p.positive("server.lease", int64(s.Lease))
	p.positive("server.maxInterruptions", int64(s.MaxInterruptions))
	p.positive("server.maxResult", int64(s.MaxResult))
	p.positive("server.janitorInterval", int64(s.JanitorInterval))
	if s.Forward != "" {
		if msg := checkHTTPURL(s.Forward); msg != "" {
			p.errorf("server.forward", "%s", msg)
		}
	}
	p.notEmpty("server.seedRoutes")
	p.notEmpty("server.workers")
	cb := s.Callbacks
	if _, err := webhook.ParseAllowList(cb.Allow...); err != nil {
		p.errorf("server.callbacks.allow", "%v", err)
	}
	for _, k := range []struct {
		key string
		v   Duration
	}{{"maxAge", cb.MaxAge}, {"minBackoff", cb.MinBackoff}, {"maxBackoff", cb.MaxBackoff}, {"timeout", cb.Timeout}} {
		p.positive("server.callbacks."+k.key, int64(k.v))
	}
	if cb.MinBackoff > 0 && cb.MaxBackoff > 0 && cb.MinBackoff > cb.MaxBackoff {
		p.errorf("server.callbacks.minBackoff", "%s is more than maxBackoff (%s)", cb.MinBackoff, cb.MaxBackoff)
	}
}

// checkCallbacks checks a route's callbacks.
func (p *parser) checkCallbacks(at string, c *RouteCallbacks) {
	if c == nil {
		return
	}
	for i, t := range c.Targets {
		if _, err := webhook.CheckURL(t.URL); err != nil {
			p.errorf(at+".callbacks.targets["+strconv.Itoa(i)+"].url", "%v", err)
		}
	}
	if c.Allow != nil {
		if _, err := webhook.ParseAllowList(*c.Allow...); err != nil {
			p.errorf(at+".callbacks.allow", "%v", err)
		}
	}
}

// positive checks that path, when set, is more than 0.
func (p *parser) positive(path string, v int64) {
	if p.notEmpty(path) && v <= 0 {
		p.errorf(path, "must be more than 0")
	}
}

// notEmpty reports whether path is set, with a value: a key with no value
// is an error.
func (p *parser) notEmpty(path string) bool {
	if !p.has(path) {
		return false
	}
	if p.isNull(path) {
		p.errorf(path, "has no value; give one or remove the key")
		return false
	}
	return true
}

func checkHTTPURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Sprintf("%q is not an absolute http:// or https:// URL", s)
	}
	return ""
}

// checkSettings checks the settings of a route or of the defaults block.
func (p *parser) checkSettings(at string, s *RouteSettings) {
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"timeout", s.Timeout}, {"backoff", s.Backoff}, {"maxBackoff", s.MaxBackoff},
		{"resultTTL", s.ResultTTL}, {"retention", s.Retention}, {"tombstone", s.Tombstone},
	} {
		p.positive(join(at, d.key), int64(d.v))
	}
	p.positive(join(at, "maxBody"), int64(s.MaxBody))
	if p.notEmpty(join(at, "maxAttempts")) && s.MaxAttempts < 1 {
		p.errorf(join(at, "maxAttempts"), "must be at least 1, not %d", s.MaxAttempts)
	}
	if p.notEmpty(join(at, "concurrency")) && s.Concurrency < 0 {
		p.errorf(join(at, "concurrency"), "must be 0 (no limit) or more, not %d", s.Concurrency)
	}
}

// checkBackoff checks that the effective maxBackoff is not below backoff,
// reported where one of them is set under at.
func (p *parser) checkBackoff(at string, s RouteSettings) {
	if s.Backoff <= 0 || s.MaxBackoff <= 0 || s.MaxBackoff >= s.Backoff {
		return
	}
	switch {
	case p.has(join(at, "maxBackoff")):
		p.errorf(join(at, "maxBackoff"), "%s is less than backoff (%s)", s.MaxBackoff, s.Backoff)
	case p.has(join(at, "backoff")):
		p.errorf(join(at, "backoff"), "%s is more than maxBackoff (%s)", s.Backoff, s.MaxBackoff)
	}
}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	standard = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
)

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", c):
		default:
			return false
		}
	}
	return true
}

// checkPath checks a route's path on its own; "" when it is good.
func checkPath(path string) string {
	if path == "" {
		return "is required: a path pattern such as /v1/reports or /v1/items/{id}"
	}
	if !strings.HasPrefix(path, "/") {
		return fmt.Sprintf("%q must start with /", path)
	}
	if strings.ContainsAny(path, " \t\r\n?#") {
		return fmt.Sprintf("%q: a path pattern has no spaces, query or fragment", path)
	}
	if msg := register(http.NewServeMux(), path); msg != "" {
		_, detail, _ := strings.Cut(msg, ": ")
		return fmt.Sprintf("%q is not a valid path pattern: %s", path, detail)
	}
	if r, ok := reserved(path); ok {
		return fmt.Sprintf("%q is under %s, a path of arr's own api", path, r)
	}
	return ""
}

// register adds pattern to mux; it returns the panic's message, if any.
func register(mux *http.ServeMux, pattern string) (msg string) {
	defer func() {
		if r := recover(); r != nil {
			msg = fmt.Sprint(r)
		}
	}()
	mux.Handle(pattern, http.NotFoundHandler())
	return ""
}

// matchRoutes finds the node of each decoded route: yaml.v3 leaves out of
// File.Routes the items it could not decode (empty ones, scalars, lists,
// mappings with a key set twice), which all have their error. It reports
// whether the routes could be matched to their nodes.
func (p *parser) matchRoutes() bool {
	p.routeAt = p.routeAt[:0]
	seq := p.nodes["routes"]
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return len(p.f.Routes) == 0
	}
	for j, n := range seq.Content {
		at := "routes[" + strconv.Itoa(j) + "]"
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch {
		case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
			p.errorf(at, "is empty: a route is a mapping with at least path and handler")
		case n.Kind == yaml.MappingNode && !hasDuplicateKeys(n):
			p.routeAt = append(p.routeAt, at)
		}
	}
	return len(p.routeAt) == len(p.f.Routes)
}

func hasDuplicateKeys(n *yaml.Node) bool {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind == yaml.ScalarNode {
			if seen[k.Value] {
				return true
			}
			seen[k.Value] = true
		}
	}
	return false
}

// checkRoute checks routes[i] and fills in its defaults; it reports
// whether the method and path are good enough to check for conflicts.
func (p *parser) checkRoute(i int, names map[string]int) bool {
	r := &p.f.Routes[i]
	at := p.routeAt[i]
	if n := p.nodes[at]; n != nil {
		r.Line = n.Line
	}
	patternOK := true

	switch m := r.Method; {
	case m == "":
		r.Method = http.MethodPost
	case m == "*" || strings.EqualFold(m, "ANY"):
		r.Method = "*"
	case !isToken(m):
		p.errorf(at+".method", "%q is not an HTTP method", m)
		patternOK = false
	case strings.ToUpper(m) != m && slices.Contains(standard, strings.ToUpper(m)):
		p.errorf(at+".method", "%q: methods are case-sensitive; write %s", m, strings.ToUpper(m))
		patternOK = false
	}
	if msg := checkPath(r.Path); msg != "" {
		p.errorf(at+".path", "%s", msg)
		patternOK = false
	}
	p.checkCallbacks(at, r.Callbacks)

	switch h := r.Handler; {
	case h == "":
		p.errorf(at+".handler", "is required: echo, forward, exec or a Go handler's name")
	case h == HandlerEcho || h == HandlerForward || h == HandlerExec || slices.Contains(p.knownGo, h):
	case len(p.knownGo) == 0:
		p.errorf(at+".handler", "unknown handler %q: use echo, forward or exec (this program registers no Go handlers)", h)
	default:
		p.errorf(at+".handler", "unknown handler %q: use echo, forward, exec or one of the program's Go handlers: %s",
			h, strings.Join(p.knownGo, ", "))
	}
	p.checkForward(at, r)
	for j, n := range r.DropHeaders {
		if !arr.ValidHeaderName(n) {
			p.errorf(at+".dropHeaders["+strconv.Itoa(j)+"]", "%q is not a header name (letters, digits and '-')", n)
		}
	}
	for j, n := range r.KeepHeaders {
		if !arr.ValidHeaderName(n) {
			p.errorf(at+".keepHeaders["+strconv.Itoa(j)+"]", "%q is not a header name (letters, digits and '-')", n)
		}
	}
	p.checkExec(at, r)
	p.checkSchema(at, r)
	p.checkMediaTypes(at, r)
	p.checkSettings(at, &r.RouteSettings)
	p.checkBackoff(at, p.f.Effective(r))

	derived := r.Name == ""
	if derived && patternOK {
		r.Name = arr.RouteName(r.Method, r.Path)
	}
	switch {
	case r.Name == "":
		if patternOK {
			p.errorf(at+".name", "cannot be derived from the method and path; set one")
		}
	case !nameRE.MatchString(r.Name):
		p.errorf(at+".name", "%q is not a route name: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit", r.Name)
	default:
		if j, dup := names[r.Name]; dup {
			o := &p.f.Routes[j]
			switch {
			case !derived:
				p.errorf(at+".name", "%q is already the name of %s (line %d)", r.Name, p.routeAt[j], o.Line)
			case !strings.Contains(conflict(o.Pattern(), r.Pattern()), "matches the same requests"):
				// (A duplicate route is reported as such, not for its name.)
				p.errorf(at+".name", "%q, derived from the method and path, is already the name of %s (line %d); set name to tell them apart", r.Name, p.routeAt[j], o.Line)
			}
		} else {
			names[r.Name] = i
		}
	}
	return patternOK
}

func (p *parser) checkForward(at string, r *Route) {
	if r.Handler != HandlerForward {
		if r.Forward != nil {
			p.errorf(at+".forward", "is only for handler: forward (this route's handler is %q)", r.Handler)
		}
		return
	}
	switch {
	case r.Forward == nil || r.Forward.URL == "":
		p.errorf(at+".forward.url", "is required with handler: forward: the upstream's absolute http(s) URL")
		return
	default:
		if msg := checkHTTPURL(r.Forward.URL); msg != "" {
			p.errorf(at+".forward.url", "%s", msg)
		}
	}
	for j, n := range r.Forward.Credentials {
		switch {
		case !arr.ValidHeaderName(n):
			p.errorf(at+".forward.credentials["+strconv.Itoa(j)+"]", "%q is not a header name (letters, digits and '-')", n)
		case arr.IsHopByHop(n):
			p.errorf(at+".forward.credentials["+strconv.Itoa(j)+"]", "%s is a hop-by-hop header, addressed to arr: it cannot be passed on", n)
		}
	}
	for k, v := range r.Forward.Header {
		if !isToken(k) {
			p.errorf(at+".forward.header."+k, "%q is not a header name", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			p.errorf(at+".forward.header."+k, "a header value cannot hold a line break or NUL")
		}
	}
}

func (p *parser) checkExec(at string, r *Route) {
	if r.Handler != HandlerExec {
		if r.Exec != nil {
			p.errorf(at+".exec", "is only for handler: exec (this route's handler is %q)", r.Handler)
		}
		return
	}
	x := r.Exec
	if x == nil || len(x.Command) == 0 {
		p.errorf(at+".exec.command", `is required with handler: exec: the program and its arguments, e.g. ["sh", "-c", "tr a-z A-Z"]`)
		return
	}
	if x.Command[0] == "" {
		p.errorf(at+".exec.command[0]", "the program's name is empty")
	}
	if x.Dir != "" && !filepath.IsAbs(x.Dir) {
		x.Dir = filepath.Join(filepath.Dir(p.name), x.Dir)
	}
	for k, v := range x.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			p.errorf(at+".exec.env."+k, "%q is not an environment variable's name", k)
		}
	}
	for j, k := range x.PassEnv {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			p.errorf(at+".exec.passEnv["+strconv.Itoa(j)+"]", "%q is not an environment variable's name", k)
		case strings.HasPrefix(k, "ARR_"):
			p.errorf(at+".exec.passEnv["+strconv.Itoa(j)+"]", "%s: the ARR_ variables are set by the exec handler", k)
		}
	}
	if x.ContentType != "" {
		if _, _, err := mime.ParseMediaType(x.ContentType); err != nil {
			p.errorf(at+".exec.contentType", "%q is not a media type: %v", x.ContentType, err)
		}
	}
	p.positive(at+".exec.killGrace", int64(x.KillGrace))
	for j, c := range x.PermanentExitCodes {
		if c < 1 || c > 255 {
			p.errorf(at+".exec.permanentExitCodes["+strconv.Itoa(j)+"]", "%d is not a failing exit code (1 to 255)", c)
		}
	}
}

// checkSchema compiles the route's schema, if it has one.
func (p *parser) checkSchema(at string, r *Route) {
	inline := p.has(at + ".schema")
	if inline && r.SchemaFile != "" {
		p.errorf(at+".schemaFile", "set schema or schemaFile, not both")
		return
	}
	var doc any
	var loc string
	switch {
	case inline:
		if r.Schema == nil {
			p.errorf(at+".schema", "has no value; give a JSON Schema or remove the key")
			return
		}
		v, err := jsonValue(r.Schema, at+".schema")
		if err != nil {
			pe := err.(*pathError)
			p.errorf(pe.path, "%s", pe.msg)
			return
		}
		r.Schema, doc = v, v
		dir, err := filepath.Abs(filepath.Dir(p.name))
		if err != nil {
			dir = filepath.Dir(p.name)
		}
		loc = filepath.Join(dir, filepath.Base(p.name)+"."+strings.NewReplacer("[", "-", "]", "").Replace(at)+".schema.json")
	case r.SchemaFile != "":
		if !filepath.IsAbs(r.SchemaFile) {
			r.SchemaFile = filepath.Join(filepath.Dir(p.name), r.SchemaFile)
		}
		data, err := os.ReadFile(r.SchemaFile)
		if err != nil {
			p.errorf(at+".schemaFile", "%v", err)
			return
		}
		switch strings.ToLower(filepath.Ext(r.SchemaFile)) {
		case ".yaml", ".yml":
			var v any
			if err := yaml.Unmarshal(data, &v); err != nil {
				p.errorf(at+".schemaFile", "%s: %s", r.SchemaFile, strings.TrimPrefix(err.Error(), "yaml: "))
				return
			}
			if doc, err = jsonValue(v, ""); err != nil {
				p.errorf(at+".schemaFile", "%s: %v", r.SchemaFile, err)
				return
			}
		default:
			if doc, err = jsonschema.UnmarshalJSON(bytes.NewReader(data)); err != nil {
				p.errorf(at+".schemaFile", "%s is not JSON: %v", r.SchemaFile, err)
				return
			}
		}
		if loc, err = filepath.Abs(r.SchemaFile); err != nil {
			loc = r.SchemaFile
		}
	default:
		return
	}
	sch, ptr, err := compileSchema(loc, doc)
	if err != nil {
		if !inline {
			p.errorf(at+".schemaFile", "%s is not a valid JSON Schema: %v", r.SchemaFile, err)
			return
		}
		// Point at the offending keyword's line.
		deep := at + ".schema"
		for _, tok := range ptr {
			if n := p.nodes[deep]; n != nil && n.Kind == yaml.SequenceNode {
				deep += "[" + tok + "]"
			} else {
				deep = join(deep, tok)
			}
		}
		p.errorAt(p.lineOf(deep), at+".schema", "not a valid JSON Schema: %v", err)
		return
	}
	r.schema = sch
}

// checkMediaTypes normalizes the route's media types; a schema implies
// JSON ones.
func (p *parser) checkMediaTypes(at string, r *Route) {
	if len(r.MediaTypes) == 0 {
		if r.schema != nil || r.Schema != nil || r.SchemaFile != "" {
			r.MediaTypes = []string{"application/json"}
		}
		return
	}
	for j, s := range r.MediaTypes {
		key := at + ".mediaTypes[" + strconv.Itoa(j) + "]"
		mt, params, err := mime.ParseMediaType(s)
		switch {
		case err != nil:
			p.errorf(key, "%q is not a media type (e.g. application/json): %v", s, err)
			continue
		case len(params) > 0:
			p.errorf(key, "%q: media types are matched without parameters; write %s", s, mt)
			continue
		case !strings.Contains(mt, "/") || strings.HasPrefix(mt, "/") || strings.HasSuffix(mt, "/"):
			p.errorf(key, "%q is not a media type: it is type/subtype, e.g. application/json", s)
			continue
		case strings.Contains(mt, "*"):
			p.errorf(key, "%q: wildcards are not matched; list the types, or leave mediaTypes out to accept any", s)
			continue
		}
		r.MediaTypes[j] = mt
		if (r.Schema != nil || r.SchemaFile != "") && !strings.HasSuffix(mt, "/json") && !strings.HasSuffix(mt, "+json") {
			p.errorf(key, "%q is not a JSON media type, but the route's schema needs a JSON body", s)
		}
	}
}

// checkConflicts registers the routes' patterns, the seed's first, in one
// ServeMux, and reports duplicates and conflicts.
func (p *parser) checkConflicts(ok []bool) {
	mux := http.NewServeMux()
	seed := p.f.Server.SeedRoutes == nil || *p.f.Server.SeedRoutes
	if seed {
		for _, s := range seedRoutes {
			register(mux, s.method+" "+s.path)
		}
	}
	for i := range p.f.Routes {
		if !ok[i] {
			continue
		}
		r := &p.f.Routes[i]
		at := p.routeAt[i] + ".path"
		if seed && r.Method == http.MethodPost && r.Path != seedRoutes[0].path && strings.EqualFold(r.Path, seedRoutes[0].path) {
			p.errorf(at, "%s is the seed's route POST %s, which matches any case (set server.seedRoutes: false to replace it)", r.Pattern(), seedRoutes[0].path)
			continue
		}
		msg := register(mux, r.Pattern())
		if msg == "" {
			continue
		}
		found := false
		if seed {
			for _, s := range seedRoutes {
				if conflict(s.method+" "+s.path, r.Pattern()) != "" {
					p.errorf(at, "%s conflicts with the seed's route %s %s (set server.seedRoutes: false to replace it)", r.Pattern(), s.method, s.path)
					found = true
					break
				}
			}
		}
		for j := 0; j < i && !found; j++ {
			if !ok[j] {
				continue
			}
			o := &p.f.Routes[j]
			why := conflict(o.Pattern(), r.Pattern())
			if why == "" {
				continue
			}
			found = true
			if strings.Contains(why, "matches the same requests as") {
				p.errorf(at, "duplicate route: %s is also %s (line %d)", r.Pattern(), p.routeAt[j], o.Line)
			} else {
				p.errorf(at, "%s conflicts with %s (line %d), %s: %s", r.Pattern(), p.routeAt[j], o.Line, o.Pattern(), why)
			}
		}
		if !found {
			p.errorf(at, "%s", oneLine(msg))
		}
	}
}

// conflict returns why pattern b conflicts with a, or "".
func conflict(a, b string) string {
	mux := http.NewServeMux()
	register(mux, a)
	msg := register(mux, b)
	if msg == "" {
		return ""
	}
	_, why, _ := strings.Cut(msg, ":\n")
	first, _, _ := strings.Cut(why, "\n")
	if _, like, ok := strings.Cut(first, " both match some paths, like "); ok {
		return "both match some paths, like " + strings.TrimSuffix(like, ".") + ", and neither is more specific than the other"
	}
	return oneLine(first)
}
