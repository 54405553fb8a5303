// Command bare202 is the HTTP ceiling for arr's submit benchmarks: a bare
// net/http server that reads the body and answers 202 with a Location,
// storing nothing.
//
//	cd bench/bare202 && go run . -addr 127.0.0.1:9202
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync/atomic"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9202", "listen address")
	flag.Parse()
	var n atomic.Int64
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Location", "http://"+r.Host+"/v1/operations/"+strconv.FormatInt(n.Add(1), 10))
		w.WriteHeader(http.StatusAccepted)
	})))
}
