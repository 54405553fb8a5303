package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/arrhq/arr/embedded"
	"github.com/arrhq/arr/engine"
	"github.com/arrhq/arr/urlsign"
)

const keysUsage = `Usage:
  arr keys list [-data DIR] [-results URL | -credentials]
  arr keys rotate [-revoke KID] [-data DIR] [-results URL | -credentials]

list shows the signing keys of result URLs: id, creation, retirement, and
which one signs (never a secret). rotate adds a new key that signs from
now on; the others keep verifying the URLs they signed until they age out
(the longest URL lifetime + 1h after retirement, pruned by a later
rotation) or are revoked. -revoke KID also removes key KID: the URLs it
signed stop working. A running arr picks a change up within 5 seconds.
-data and -results are serve's: the keyring is the results store's.

The secrets that sign callbacks derive from this keyring (one per route
and per principal): a rotation gives each a new secret, which
GET /v1/callbacks/secret shows; until the retired key is pruned or
revoked, and for 7 days at most, callbacks carry a second signature by the
old secret, so receivers can switch without missing one.

With -credentials, the keyring is instead the one that encrypts the
credentials forward routes keep ({data}/credential-keys.json): a rotation
makes new operations use the new key, and retired keys keep opening the
operations sealed with them (they are never pruned: revoke one only once
no operation sealed with it is kept any more).
`

// keysCmd runs arr keys.
func keysCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "rotate") {
		fmt.Fprint(stderr, keysUsage)
		if len(args) == 0 {
			return errUsage
		}
		if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || args[0] == "help" {
			return flag.ErrHelp
		}
		return fmt.Errorf("arr keys: unknown command %q", args[0])
	}
	sub := args[0]
	fs := flag.NewFlagSet("arr keys "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, keysUsage); fs.PrintDefaults() }
	data := fs.String("data", "arr-data", "data directory of arr serve (its default result store's keyring)")
	results := fs.String("results", "", "result store URL, as arr serve's -results (default embedded:{data}/db)")
	creds := fs.Bool("credentials", false, "the keyring of forwarded credentials ({data}/"+credentialKeysFile+") instead of the result URLs'")
	var revoke string
	if sub == "rotate" {
		fs.StringVar(&revoke, "revoke", "", "also remove the key with this id (after the rotation, so the active one can be revoked too)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("arr keys %s takes no arguments, got %q", sub, fs.Args())
	}
	if revoke != "" && !urlsign.ValidKID(revoke) {
		return fmt.Errorf("-revoke %q is not a key id", revoke)
	}
	resultsURL := *results
	if resultsURL == "" {
		resultsURL = "embedded:" + filepath.Join(*data, "db")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var keys urlsign.Keys
	var life time.Duration
	var closeKeys func()
	var err error
	if *creds {
		if *results != "" {
			return errors.New("-credentials and -results: give one (the credentials' keyring is in -data)")
		}
		keys, err = urlsign.OpenFileKeys(filepath.Join(*data, credentialKeysFile), "")
		// A sealed operation may be retried as long as it is kept: its
		// key is kept until revoked.
		life, closeKeys = credentialKeyLife, func() { _ = keys.Close() }
	} else {
		keys, life, closeKeys, err = openKeys(ctx, resultsURL)
	}
	if err != nil {
		return err
	}
	defer closeKeys()
	var kr *urlsign.Keyring
	if revoke != "" { // refuse an unknown id before rotating
		if kr, _, err = urlsign.LoadOrCreate(ctx, keys, time.Now()); err != nil {
			return err
		}
		if kr.Key(revoke) == nil {
			return fmt.Errorf("-revoke %s: %w (see arr keys list)", revoke, urlsign.ErrUnknownKey)
		}
	}
	if sub == "rotate" {
		if kr, _, err = urlsign.RotateKeys(ctx, keys, time.Now(), life); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rotated: key %s signs from now on\n", kr.Active().ID)
		if revoke != "" {
			if kr, _, err = urlsign.RevokeKey(ctx, keys, revoke); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "revoked: key %s\n", revoke)
		}
	} else if kr, _, err = urlsign.LoadOrCreate(ctx, keys, time.Now()); err != nil {
		return err
	}
	return listKeys(stdout, kr)
}

// credentialKeyLife is how long a retired credentials key is kept by
// rotations: for good (ten years), so that no kept operation loses the key
// it was sealed with; -revoke removes one.
const credentialKeyLife = 10 * 365 * 24 * time.Hour

// openKeys opens the keyring of the signer of the result store at
// resultsURL and returns it with the store's longest URL lifetime (for
// pruning retired keys). The embedded store's keyring is opened without
// its database, which a running arr holds; other stores' through their
// engine (which creates the keyring if there is none).
func openKeys(ctx context.Context, resultsURL string) (urlsign.Keys, time.Duration, func(), error) {
	if rest, ok := strings.CutPrefix(resultsURL, "embedded:"); ok {
		u, err := url.Parse("embedded:" + rest)
		if err != nil {
			return nil, 0, nil, fmt.Errorf("-results %q: %w", redactURL(resultsURL), err)
		}
		keys, err := embedded.SignerKeys(u)
		if err != nil {
			return nil, 0, nil, err
		}
		life := urlsign.DefaultMaxURLLifetime
		if v := u.Query().Get("maxURLLifetime"); v != "" {
			if life, err = time.ParseDuration(v); err != nil || life <= 0 {
				return nil, 0, nil, fmt.Errorf("-results: maxURLLifetime=%q is not a positive duration", v)
			}
		}
		return keys, life, func() { _ = keys.Close() }, nil
	}
	eng, err := engine.Open(ctx, resultsURL)
	if err != nil {
		return nil, 0, nil, err
	}
	sg, err := eng.Signer(ctx)
	if err != nil {
		_ = eng.Close()
		return nil, 0, nil, err
	}
	h, ok := sg.Driver().(*urlsign.HMAC)
	if !ok {
		_ = eng.Close()
		return nil, 0, nil, errors.New("the result store's URLs are not signed with arr's keys: nothing to rotate")
	}
	return h.Keys(), h.MaxURLLifetime(), func() { _ = eng.Close() }, nil
}

// listKeys prints the keys of kr, without their secrets.
func listKeys(w io.Writer, kr *urlsign.Keyring) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tCREATED\tRETIRED\tSIGNS")
	for _, k := range kr.Keys() {
		retired, signs := "-", ""
		if !k.Retired.IsZero() {
			retired = k.Retired.UTC().Format(time.RFC3339)
		}
		if k.ID == kr.Active().ID {
			signs = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", k.ID, k.Created.UTC().Format(time.RFC3339), retired, signs)
	}
	return tw.Flush()
}
