package httpapi_test

import (
	"log"

	"github.com/herald-sse/herald"
	"github.com/herald-sse/herald/httpapi"
)

// Serving a hub inside an application: the Handler is a plain http.Handler,
// and NewServer sets timeouts that do not cut long-lived streams.
func ExampleHandler() {
	hub := &herald.Hub{}
	defer hub.Close()
	api := &httpapi.Handler{Hub: hub, MaxConnections: 10000}

	srv := httpapi.NewServer(":8080", api)
	srv.RegisterOnShutdown(func() { hub.Close() }) // ends streams on Shutdown

	// Application code can also publish without HTTP.
	go hub.Publish(herald.Event{Topics: []string{"news"}, Data: "hello"})

	log.Fatal(srv.ListenAndServe())
}
