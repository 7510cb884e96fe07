package httpapi_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/auth"
	"github.com/herald-sse/herald/httpapi"
)

// Serving a hub inside an application: the Handler is a plain http.Handler,
// and NewServer sets timeouts that do not cut long-lived streams.
// Publishing needs a choice: here, tokens signed with the application's
// secret (without PublishAuth, only OpenPublish lets anyone publish).
func ExampleHandler() {
	hub := &herald.Hub{}
	if err := hub.Open(); err != nil {
		log.Fatal(err)
	}
	defer hub.Close()
	publishers, err := auth.NewVerifier(context.Background(), auth.Config{
		Secret:  []byte(os.Getenv("HERALD_SECRET")),
		Sources: auth.FromHeader, // publishers never by cookie
	})
	if err != nil {
		log.Fatal(err)
	}
	api := &httpapi.Handler{Hub: hub, MaxConnections: 10000, PublishAuth: publishers}

	srv := httpapi.NewServer(":8080", api)
	srv.RegisterOnShutdown(func() { hub.Close() }) // ends streams on Shutdown

	// Application code can also publish without HTTP.
	go hub.Publish(herald.Event{Topics: []string{"news"}, Data: "hello"})

	log.Fatal(srv.ListenAndServe())
}

// Mounting the API in an application's own server and mux. ConnContext
// lets plain HTTP/1.1 streams use the shared engine (no goroutine per idle
// stream); a graceful stop closes the hub and waits for the streams the
// engine took over, which http.Server.Shutdown does not track.
func ExampleConnContext() {
	hub := &herald.Hub{}
	if err := hub.Open(); err != nil {
		log.Fatal(err)
	}
	// OpenPublish: anyone may publish, for local development only; in
	// production set PublishAuth instead.
	api := &httpapi.Handler{Hub: hub, OpenPublish: true}

	mux := http.NewServeMux()
	mux.Handle("/events", api)
	mux.Handle("/publish", api)
	srv := &http.Server{
		Addr:              ":8080",
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ConnContext:       httpapi.ConnContext,
	}
	go srv.ListenAndServe()

	// Later, on SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	srv.Shutdown(ctx) // stops accepting; waits for requests it still tracks
	hub.Close()       // every stream sends what is queued and ends
	api.WaitStreams(ctx)
}
