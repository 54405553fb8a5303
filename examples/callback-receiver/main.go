// Command callback-receiver receives arr's callbacks: it checks each
// request's Standard Webhooks signature and records the CloudEvent.
//
//	go run ./examples/callback-receiver -addr 127.0.0.1:8090 -secret whsec_…
//
// The first line it prints is "listening on HOST:PORT". A callback whose
// signature verifies with one of the secrets is answered with -status (204)
// and appended to -out (stdout) as one JSON line:
//
//	{"webhookId":"…","type":"…","subject":"…","event":{…the CloudEvent…}}
//
// Any other request is answered 401, logged on stderr and not recorded.
// arr delivers at least once, with the same webhook-id on every retry: a
// real receiver acts on each webhook-id once.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/arrhq/arr/webhook"
)

func main() {
	log.SetPrefix("callback-receiver: ")
	log.SetFlags(0)
	var secrets secretList
	flag.Var(&secrets, "secret", "a callback secret, whsec_… (repeat it, or separate secrets with commas; default: $CALLBACK_SECRET)")
	addr := flag.String("addr", "127.0.0.1:0", "the address to listen on")
	status := flag.Int("status", http.StatusNoContent, "the status to answer verified callbacks with")
	out := flag.String("out", "", "the file to append verified events to (default: stdout)")
	flag.Parse()
	if env := os.Getenv("CALLBACK_SECRET"); len(secrets) == 0 && env != "" {
		if err := secrets.Set(env); err != nil {
			log.Fatalf("CALLBACK_SECRET: %v", err)
		}
	}
	if len(secrets) == 0 || *status < 200 || *status > 599 {
		flag.Usage()
		os.Exit(2)
	}

	events := os.Stdout
	if *out != "" {
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			log.Fatal(err)
		}
		defer f.Close()
		events = f
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("listening on %s\n", ln.Addr())

	srv := &http.Server{
		Handler:           &receiver{secrets: secrets, status: *status, out: json.NewEncoder(events)},
		ReadHeaderTimeout: 10 * time.Second,
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}

// receiver verifies and records callbacks.
type receiver struct {
	secrets [][]byte
	status  int
	mu      sync.Mutex // serializes the records
	out     *json.Encoder
}

// record is one line of the output.
type record struct {
	WebhookID string          `json:"webhookId"`
	Type      string          `json:"type"`
	Subject   string          `json:"subject"`
	Event     json.RawMessage `json:"event"`
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusRequestEntityTooLarge)
		return
	}
	if err := rc.verify(r.Header, body); err != nil {
		log.Printf("refused %s %s from %s: %v", r.Method, r.URL.Path, r.RemoteAddr, err)
		http.Error(w, "the signature does not verify", http.StatusUnauthorized)
		return
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		log.Printf("refused webhook-id %s: not a CloudEvent: %v", r.Header.Get(webhook.HeaderID), err)
		http.Error(w, "not a CloudEvent", http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	err = rc.out.Encode(record{r.Header.Get(webhook.HeaderID), ev.Type, ev.Subject, body})
	rc.mu.Unlock()
	if err != nil {
		log.Printf("cannot record webhook-id %s: %v", r.Header.Get(webhook.HeaderID), err)
		http.Error(w, "cannot record the event", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(rc.status)
}

// verify accepts a request signed with any of the secrets (so that a
// rotation needs no downtime: give the old and the new one).
func (rc *receiver) verify(h http.Header, body []byte) (err error) {
	for _, key := range rc.secrets {
		if err = webhook.Verify(key, h, body, time.Now(), webhook.DefaultTolerance); err == nil {
			return nil
		}
	}
	return err
}

// secretList is the -secret flag: whsec_ secrets, repeated or
// comma-separated.
type secretList [][]byte

func (s *secretList) String() string { return fmt.Sprintf("%d secrets", len(*s)) }

func (s *secretList) Set(v string) error {
	for part := range strings.SplitSeq(v, ",") {
		key, err := webhook.ParseSecret(part)
		if err != nil {
			return err
		}
		*s = append(*s, key)
	}
	return nil
}
