// Command benchserver is the HTTP server the service benchmarks run in a
// pod. busybox httpd forks a process per connection, which would make the
// server the bottleneck and hide what the service's NAT rules cost; this
// answers from one process, with keep-alive.
//
//	GET /            the pod's hostname (its name)
//	GET /healthz     200 when ready, 503 when not (the readiness probe)
//	GET /ready/up    become ready
//	GET /ready/down  become not ready
//
// It is built with CGO_ENABLED=0 by the benchmarks and added to the busybox
// test image as /benchserver.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"sync/atomic"
)

func main() {
	addr := flag.String("listen", ":8080", "address to serve on")
	ready := flag.Bool("ready", true, "start ready")
	flag.Parse()
	name, err := os.Hostname()
	if err != nil {
		log.Fatalf("hostname: %v", err)
	}
	var isReady atomic.Bool
	isReady.Store(*ready)

	body := []byte(name)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if !isReady.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /ready/up", func(http.ResponseWriter, *http.Request) { isReady.Store(true) })
	mux.HandleFunc("GET /ready/down", func(http.ResponseWriter, *http.Request) { isReady.Store(false) })
	log.Fatal(http.ListenAndServe(*addr, mux))
}
