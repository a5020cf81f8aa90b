package mirror

import (
	"context"
	"encoding/json"
	"strconv"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
	"github.com/creditsessions/creditsessions/server"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (s *intercepted) handleBatch(ctx context.Context, req any) (any, error) {
	return s.next.BatchGetCreditSessions(ctx, req.(*creditv1.BatchGetCreditSessionsRequest))
}

func (s *intercepted) BatchGetCreditSessions(ctx context.Context, req *creditv1.BatchGetCreditSessionsRequest) (*creditv1.BatchGetCreditSessionsResponse, error) {
	ctx = server.WithTransport(ctx, "rest")
	if s.interceptor == nil {
		return s.next.BatchGetCreditSessions(ctx, req)
	}
	resp, err := s.interceptor(ctx, req, s.batchInfo, s.batchHandler)
	if err != nil {
		return nil, err
	}
	out, ok := resp.(*creditv1.BatchGetCreditSessionsResponse)
	if !ok || out == nil {
		return nil, status.Error(codes.Internal, "interceptor returned no response")
	}
	return out, nil
}

// batchErrorBody is a batch result's error: Plaid's error object, with the HTTP status a
// single call would have had under status, as Plaid's webhooks carry it.
type batchErrorBody struct {
	plaidErrorBody
	Status int `json:"status"`
}

// appendBatch writes a batch's answer as Plaid-style JSON:
//
//	{"results": [{"response": {"request_id": ..., "sessions": [...]}, "age": 12},
//	             {"error": {"error_type": ..., "error_code": ..., "status": 400, ...}}]}
//
// one result per token, in the request's order; "age" only on answers from the cache.
func appendBatch(b []byte, m *creditv1.BatchGetCreditSessionsResponse) ([]byte, error) {
	b = append(b, `{"results":[`...)
	for i, r := range m.GetResults() {
		if i > 0 {
			b = append(b, ',')
		}
		switch o := r.GetOutcome().(type) {
		case *creditv1.BatchGetCreditSessionsResult_Response:
			b = append(b, `{"response":`...)
			var err error
			if b, err = plaidjson.AppendResponse(b, o.Response); err != nil {
				return nil, err
			}
			if r.Age != nil {
				b = append(b, `,"age":`...)
				b = strconv.AppendInt(b, r.GetAge(), 10)
			}
			b = append(b, '}')
		case *creditv1.BatchGetCreditSessionsResult_Error:
			e := fromStatus(status.FromProto(o.Error))
			if e.body.RequestID == "" {
				e.body.RequestID = server.NewRequestID()
			}
			data, err := json.Marshal(batchErrorBody{plaidErrorBody: e.body, Status: e.httpStatus})
			if err != nil {
				return nil, err
			}
			b = append(append(append(b, `{"error":`...), data...), '}')
		default:
			b = append(b, `{}`...)
		}
	}
	return append(b, "]}"...), nil
}
