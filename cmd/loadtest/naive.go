package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"
)

// naive is the other yardstick: the proxy a competent engineer writes in an afternoon.
// A gRPC server with no generated service (grpc.UnknownServiceHandler), messages as
// dynamicpb from the descriptors, one shared net/http client with a keep-alive pool,
// the request's body marshalled by encoding/json, Plaid's answer read whole and
// decoded by protojson. No interceptors, logs, metrics, coalescing, retries, breaker,
// quotas or memory budget: what the service does beyond it is what its CPU pays for.
type naive struct {
	client      *http.Client
	url         string
	creds       plaid.Credentials
	reqDesc     protoreflect.MessageDescriptor
	respDesc    protoreflect.MessageDescriptor
	tokenField  protoreflect.FieldDescriptor
	unmarshaler protojson.UnmarshalOptions
}

// startNaive serves the naive proxy on a fresh loopback listener until stop is called.
func startNaive(baseURL string, creds plaid.Credentials) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	req := (&creditv1.CreditSessionsGetRequest{}).ProtoReflect().Descriptor()
	n := &naive{
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}},
		url:         baseURL + "/credit/sessions/get",
		creds:       creds,
		reqDesc:     req,
		respDesc:    (&creditv1.CreditSessionsGetResponse{}).ProtoReflect().Descriptor(),
		tokenField:  req.Fields().ByName("user_token"),
		unmarshaler: protojson.UnmarshalOptions{DiscardUnknown: true},
	}
	srv := grpc.NewServer(grpc.UnknownServiceHandler(n.handle))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln)
	}()
	return ln.Addr().String(), func() { srv.Stop(); <-served }, nil
}

func (n *naive) handle(_ any, stream grpc.ServerStream) error {
	method, _ := grpc.MethodFromServerStream(stream)
	if method != creditv1.CreditService_CreditSessionsGet_FullMethodName {
		return status.Errorf(codes.Unimplemented, "unknown method %s", method)
	}
	in := dynamicpb.NewMessage(n.reqDesc)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	body, err := json.Marshal(map[string]string{"user_token": in.Get(n.tokenField).String()})
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	req, err := http.NewRequestWithContext(stream.Context(), http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("PLAID-CLIENT-ID", n.creds.ClientID)
	req.Header.Set("PLAID-SECRET", n.creds.Secret)
	resp, err := n.client.Do(req)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	if resp.StatusCode != http.StatusOK {
		return status.Error(codes.Unknown, fmt.Sprintf("Plaid answered %d", resp.StatusCode))
	}
	out := dynamicpb.NewMessage(n.respDesc)
	if err := n.unmarshaler.Unmarshal(data, out); err != nil {
		return status.Error(codes.Internal, err.Error())
	}
	return stream.SendMsg(out)
}
