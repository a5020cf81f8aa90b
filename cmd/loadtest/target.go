package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaid"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// The targets, in the order they are measured.
const (
	targetDirect = "direct"
	targetCanned = "canned" // the floor: a bare gRPC server with the answer at hand
	targetBare   = "bare"   // the design's floor: the bare gRPC server asking Plaid every call (see bare)
	targetNaive  = "naive"  // the naive proxy: what an afternoon's work would be (see naive)
	targetGRPC   = "grpc"
	targetREST   = "rest"
)

// target is one way of asking for a user's credit sessions.
type target interface {
	// call makes one call and consumes the whole answer; any answer but a success is
	// an error.
	call(ctx context.Context, token string) error
	// probe makes one call and decodes it: the number of sessions, and the size of the
	// body as it travelled.
	probe(ctx context.Context, token string) (sessions, size int, err error)
	close()
}

// httpTarget is POST /credit/sessions/get on the emulator (direct, with credentials in
// Plaid's headers) or on the service's REST mirror.
type httpTarget struct {
	client *http.Client
	url    string
	creds  plaid.Credentials // sent as PLAID-CLIENT-ID and PLAID-SECRET when set
}

func newHTTPTarget(baseURL string, creds plaid.Credentials, maxConcurrency int) *httpTarget {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &httpTarget{
		url:   baseURL + "/credit/sessions/get",
		creds: creds,
		client: &http.Client{
			Timeout: measureTimeout,
			Transport: &http.Transport{
				DialContext:         dialer.DialContext,
				MaxIdleConns:        maxConcurrency + 16,
				MaxIdleConnsPerHost: maxConcurrency + 16, // every worker keeps its connection
				IdleConnTimeout:     90 * time.Second,
			},
		},
	}
}

func (t *httpTarget) post(ctx context.Context, token string) (*http.Response, error) {
	body, err := json.Marshal(map[string]string{"user_token": token})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if t.creds.Complete() {
		req.Header.Set("PLAID-CLIENT-ID", t.creds.ClientID)
		req.Header.Set("PLAID-SECRET", t.creds.Secret)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(snippet))
	}
	return resp, nil
}

func (t *httpTarget) call(ctx context.Context, token string) error {
	resp, err := t.post(ctx, token)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Read, not decoded: the answer's cost to the caller is the same either way, and
	// decoding here would take CPU from the processes measured.
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Errorf("reading the body: %w", err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("body of %d bytes, Content-Length %d", n, resp.ContentLength)
	}
	return nil
}

func (t *httpTarget) probe(ctx context.Context, token string) (int, int, error) {
	resp, err := t.post(ctx, token)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	var answer struct {
		Sessions []json.RawMessage `json:"sessions"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return 0, 0, fmt.Errorf("decoding the answer: %w", err)
	}
	return len(answer.Sessions), len(body), nil
}

func (t *httpTarget) close() { t.client.CloseIdleConnections() }

// grpcTarget is the service's CreditSessionsGet over one client connection, which every
// worker shares, as a caller's process would.
type grpcTarget struct {
	conn   *grpc.ClientConn
	client creditv1.CreditServiceClient
}

func newGRPCTarget(addr string) (*grpcTarget, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The large scenario's answer is about 3 MB of protobuf; the default cap is 4 MB.
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	return &grpcTarget{conn: conn, client: creditv1.NewCreditServiceClient(conn)}, nil
}

func (t *grpcTarget) get(ctx context.Context, token string) (*creditv1.CreditSessionsGetResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, measureTimeout)
	defer cancel()
	resp, err := t.client.CreditSessionsGet(ctx, &creditv1.CreditSessionsGetRequest{UserToken: token})
	if err != nil {
		return nil, err
	}
	if len(resp.GetSessions()) == 0 {
		return nil, errors.New("an answer with no sessions")
	}
	return resp, nil
}

func (t *grpcTarget) call(ctx context.Context, token string) error {
	_, err := t.get(ctx, token)
	return err
}

func (t *grpcTarget) probe(ctx context.Context, token string) (int, int, error) {
	resp, err := t.get(ctx, token)
	if err != nil {
		return 0, 0, err
	}
	return len(resp.GetSessions()), proto.Size(resp), nil
}

func (t *grpcTarget) close() { _ = t.conn.Close() }
