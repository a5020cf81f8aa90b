package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"time"

	"github.com/creditsessions/creditsessions/client"
	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/app"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// startService runs the service in-process on loopback, on its embedded Plaid
// emulator, so that the examples run as they are. A real caller dials the service's
// address instead, such as dns:///creditsessions-grpc.NAMESPACE.svc.cluster.local:50051,
// with TLS credentials.
func startService() (target string, stop func()) {
	a, err := app.New(app.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Cache:  app.CacheConfig{MaxAge: time.Minute},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	return "dns:///" + a.GRPCAddr().String(), func() {
		cancel()
		if err := <-done; err != nil {
			log.Fatal(err)
		}
	}
}

func Example() {
	target, stop := startService()
	defer stop()

	c, err := client.Dial(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"})
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range resp.GetSessions() {
		fmt.Println(s.GetLinkSessionId(), s.GetSessionStartTime().AsTime().Format(time.RFC3339))
	}
	// Output:
	// 356dbb28-7f98-44d1-8e6d-0cec580f3171 2022-09-30T23:40:30Z
	// f742cae8-31e4-49cc-a621-6cafbdb26fb9 2022-09-26T23:40:30Z
}

// Every error carries a google.rpc.ErrorInfo naming Plaid's error; errors where
// retrying is right also carry a google.rpc.RetryInfo. Here Plaid's rate limit:
// ResourceExhausted, which the client does not retry by itself.
func ExampleErrorInfo() {
	target, stop := startService()
	defer stop()
	c, err := client.Dial(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	_, err = c.CreditSessionsGet(context.Background(),
		&creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-error-RATE_LIMIT_EXCEEDED-RATE_LIMIT"})
	fmt.Println("code:", status.Code(err))
	info := client.ErrorInfo(err)
	fmt.Println("reason:", info.GetReason(), "domain:", info.GetDomain(), "type:", info.GetMetadata()["errorType"])
	if delay, ok := client.RetryDelay(err); ok {
		fmt.Println("retry after:", delay)
	}
	// Output:
	// code: ResourceExhausted
	// reason: RATE_LIMIT domain: plaid.com type: RATE_LIMIT_EXCEEDED
	// retry after: 2s
}

// Plaid's request id comes back as metadata on every call that reached Plaid: in the
// header on success, in the trailer on failure. Quote it to Plaid about that call.
func ExampleRequestID() {
	target, stop := startService()
	defer stop()
	c, err := client.Dial(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var header, trailer metadata.MD
	resp, err := c.CreditSessionsGet(context.Background(),
		&creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"}, grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("success, id in the header:", client.RequestID(header, nil) == resp.GetRequestId())

	header, trailer = nil, nil
	_, err = c.CreditSessionsGet(context.Background(),
		&creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-unknown"}, grpc.Header(&header), grpc.Trailer(&trailer))
	fmt.Println("failure:", status.Code(err))
	fmt.Println("id in the trailer:", client.RequestID(nil, trailer) == client.ErrorInfo(err).GetMetadata()["requestId"])
	fmt.Println("and found either way:", client.RequestID(header, trailer) != "")
	// Output:
	// success, id in the header: true
	// failure: NotFound
	// id in the trailer: true
	// and found either way: true
}

// Reading the same users again: a bounded staleness lets the service answer from its
// cache, without a Plaid round trip, and say how old the answer is.
func ExampleMaxAge() {
	target, stop := startService()
	defer stop()
	c, err := client.Dial(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := client.MaxAge(context.Background(), 30*time.Second)
	for range 2 {
		var header metadata.MD
		if _, err := c.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: "user-sandbox-example"}, grpc.Header(&header)); err != nil {
			log.Fatal(err)
		}
		_, cached := client.Age(header)
		fmt.Println("from the cache:", cached)
	}
	// Output:
	// from the cache: false
	// from the cache: true
}

// A back-office job reads many users in one call; each result is the user's sessions
// or the error a single call would have got.
func ExampleClient_batch() {
	target, stop := startService()
	defer stop()
	c, err := client.Dial(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	resp, err := c.BatchGetCreditSessions(context.Background(), &creditv1.BatchGetCreditSessionsRequest{
		UserTokens: []string{"user-sandbox-sessions-2", "user-sandbox-fault-garbage"},
	})
	if err != nil {
		log.Fatal(err)
	}
	for i, r := range resp.GetResults() {
		if r.GetError() != nil {
			fmt.Println(i, status.FromProto(r.GetError()).Code())
			continue
		}
		fmt.Println(i, len(r.GetResponse().GetSessions()), "sessions")
	}
	// Output:
	// 0 2 sessions
	// 1 Unavailable
}
