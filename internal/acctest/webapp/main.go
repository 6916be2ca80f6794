// Command webapp is the HTTP server of the deployment tests. GET / answers
// "<REVISION> <hostname>\n" over keep-alive connections; GET /ready answers
// 200, or 503 when READY=fail (a revision whose rollout must fail). On
// SIGTERM it logs "TERM <time>", finishes the requests in flight, closes
// idle connections and exits 0, as a well-behaved replica does.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	log.SetFlags(0)
	log.SetOutput(os.Stdout)
	addr := ":" + envOr("PORT", "8080")
	revision := envOr("REVISION", "0")
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	srv := &http.Server{Addr: addr, Handler: handler(revision, host, os.Getenv("READY") == "fail"), ReadHeaderTimeout: 10 * time.Second}

	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := <-term
		log.Printf("TERM %s (%s)", time.Now().UTC().Format(time.RFC3339Nano), s)
		ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}()
	log.Printf("webapp revision %s on %s listening on %s", revision, host, addr)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Printf("serve: %v", err)
		os.Exit(1)
	}
	<-done
	log.Printf("stopped %s", time.Now().UTC().Format(time.RFC3339Nano))
}

func handler(revision, host string, failReady bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%s %s\n", revision, host)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if failReady {
			http.Error(w, "not ready: READY=fail", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	return mux
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
