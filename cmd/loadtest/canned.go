package main

import (
	"context"
	"net"
	"strings"
	"sync"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"google.golang.org/grpc"
)

// canned is the floor the service is measured against: a bare grpc-go server, in the
// service's process, that answers each user with the message Plaid gave for that user's
// fixture the first time, without calling Plaid again, without interceptors, metrics,
// logs or resilience. What the service costs above it is the call to Plaid and what
// the service does around it.
type canned struct {
	creditv1.UnimplementedCreditServiceServer
	upstream *plaid.Client

	mu      sync.Mutex
	answers map[string]*creditv1.CreditSessionsGetResponse // by fixture token
}

// startCanned serves the canned server on a fresh loopback listener until stop is called.
func startCanned(upstream *plaid.Client) (addr string, stop func(), err error) {
	return serveBare(&canned{upstream: upstream, answers: map[string]*creditv1.CreditSessionsGetResponse{}})
}

// bare is the floor of this design: the canned server's bare grpc-go server, whose
// handler asks Plaid on every call through the service's own client (its transport and
// its JSON decoder), and does nothing else: no interceptors, logs, metrics, auth,
// coalescing, retries or limits. What the service costs above it is what those cost;
// what it costs above canned is one HTTP exchange with Plaid and one decode, which any
// service that answers from Plaid pays.
type bare struct {
	creditv1.UnimplementedCreditServiceServer
	upstream *plaid.Client
}

func (b *bare) CreditSessionsGet(ctx context.Context, req *creditv1.CreditSessionsGetRequest) (*creditv1.CreditSessionsGetResponse, error) {
	return b.upstream.CreditSessionsGet(ctx, plaid.Request{UserToken: req.GetUserToken()})
}

// startBareProxy serves bare on a fresh loopback listener until stop is called.
func startBareProxy(upstream *plaid.Client) (addr string, stop func(), err error) {
	return serveBare(&bare{upstream: upstream})
}

// serveBare serves svc from a grpc-go server with no options, as a caller's first try
// would, on a fresh loopback listener until stop is called.
func serveBare(svc creditv1.CreditServiceServer) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := grpc.NewServer()
	creditv1.RegisterCreditServiceServer(srv, svc)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	return ln.Addr().String(), func() { srv.Stop(); <-served }, nil
}

func (c *canned) CreditSessionsGet(ctx context.Context, req *creditv1.CreditSessionsGetRequest) (*creditv1.CreditSessionsGetResponse, error) {
	fixture, _, _ := strings.Cut(req.GetUserToken(), emulator.UserSeparator)
	c.mu.Lock()
	answer := c.answers[fixture]
	c.mu.Unlock()
	if answer != nil {
		return answer, nil // read-only from here on: grpc-go only marshals it
	}
	answer, err := c.upstream.CreditSessionsGet(ctx, plaid.Request{UserToken: fixture})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.answers[fixture] = answer
	c.mu.Unlock()
	return answer, nil
}
