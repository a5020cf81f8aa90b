package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const getMethod = ServicePrefix + "CreditSessionsGet"

func grpcTransport(context.Context) string { return "grpc" }

// openTest opens a trail at path whose writer only writes when the test says (Flush),
// or at Close: the ticker is an hour.
func openTest(t *testing.T, opts Options) (*Log, *Metrics) {
	t.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	opts.Metrics = m
	if opts.FlushEvery == 0 {
		opts.FlushEvery = time.Hour
	}
	l, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
	return l, m
}

// call runs one unary call through the interceptor, the handler filling the note as the
// service does.
func call(l *Log, method string, fail error) (any, error) {
	return l.Unary(grpcTransport)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: method},
		func(ctx context.Context, _ any) (any, error) {
			NoteCaller(ctx, "spiffe://example.org/ns/billing/sa/underwriter")
			NoteFrom(ctx).SetUser("user-sandbox-1", "")
			NoteFrom(ctx).SetRequestID("req-1")
			NoteFrom(ctx).AddSessions(2)
			return "answer", fail
		})
}

func readRecords(t *testing.T, path string) []Record {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []Record
	for line := range strings.Lines(string(data)) {
		var r Record
		require.NoError(t, json.Unmarshal([]byte(line), &r), "%q", line)
		out = append(out, r)
	}
	return out
}

func TestRecordsChainAcrossRestartsAndRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, _ := openTest(t, Options{Path: path, MaxBytes: 1})
	_, err := call(l, getMethod, nil)
	require.NoError(t, err)
	require.NoError(t, l.Flush())
	_, err = call(l, getMethod, status.Error(codes.NotFound, "no"))
	require.Error(t, err)
	require.NoError(t, l.Flush()) // the file was full (MaxBytes 1): rotated first
	require.NoError(t, l.Close())

	rotated, err := filepath.Glob(path + ".*")
	require.NoError(t, err)
	require.Len(t, rotated, 1)
	old, cur := readRecords(t, rotated[0]), readRecords(t, path)
	require.Len(t, old, 1)
	require.Len(t, cur, 1)
	assert.Equal(t, GenesisPrev, old[0].Prev)
	assert.Equal(t, "OK", old[0].Code)
	assert.Equal(t, "NotFound", cur[0].Code)
	sum := sha256hex(t, rotated[0])
	assert.Equal(t, sum, cur[0].Prev, "a new file's first record links to the last of the file before")

	// A restart continues the chain from the file's last record.
	l2, _ := openTest(t, Options{Path: path, MaxBytes: -1})
	_, err = call(l2, getMethod, nil)
	require.NoError(t, err)
	require.NoError(t, l2.Close())
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	res, err := Verify(f, sum)
	require.NoError(t, err)
	assert.Empty(t, res.Breaks)
	assert.Equal(t, 2, res.Records)
}

// sha256hex is the hash of the file's last line.
func sha256hex(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	res, err := Verify(f, "")
	require.NoError(t, err)
	return res.Last
}

func TestARecordSaysWhoReadWhatWithoutTheToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := openTest(t, Options{Path: path, ServiceClientID: func() string { return "client-1" }})
	_, err := call(l, getMethod, nil)
	require.NoError(t, err)
	_, err = call(l, "/grpc.health.v1.Health/Check", nil)
	require.NoError(t, err)
	require.NoError(t, l.Flush())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.NotContains(t, string(data), "user-sandbox-1", "the token itself")
	recs := readRecords(t, path)
	require.Len(t, recs, 1, "an allowed health check is not data access")
	r := recs[0]
	assert.Equal(t, SchemaVersion, r.V)
	assert.Equal(t, "spiffe://example.org/ns/billing/sa/underwriter", r.Caller)
	assert.Equal(t, "grpc", r.Transport)
	assert.Equal(t, getMethod, r.Method)
	assert.Equal(t, sha("user-sandbox-1"), r.UserTokenSHA256)
	assert.Equal(t, "client-1", r.PlaidClientID)
	assert.Equal(t, "req-1", r.PlaidRequestID)
	assert.Equal(t, 2, r.Sessions)
	assert.Nil(t, r.Messages)
	assert.Nil(t, r.CacheHit)
	_, err = time.Parse(time.RFC3339Nano, r.Time)
	assert.NoError(t, err)
}

func TestRefusalsOfAnyMethodAreRecorded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := openTest(t, Options{Path: path})
	_, err := l.Unary(grpcTransport)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"},
		func(ctx context.Context, _ any) (any, error) {
			NoteRefusal(ctx, RefusedUnauthenticated, "")
			return nil, status.Error(codes.Unauthenticated, "no")
		})
	require.Error(t, err)
	require.NoError(t, l.Flush())
	recs := readRecords(t, path)
	require.Len(t, recs, 1)
	assert.Equal(t, "Unauthenticated", recs[0].Code)
	assert.Equal(t, RefusedUnauthenticated, recs[0].Refusal)
	assert.Empty(t, recs[0].Caller)
}

// A sink that fails (its path replaced by a directory, found at a re-open) refuses calls
// with Unavailable when records are required, and counts the loss when they are not.
func TestAFailingSinkFailsClosedOrCounts(t *testing.T) {
	for _, required := range []bool{true, false} {
		t.Run(map[bool]string{true: "required", false: "counted"}[required], func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			l, m := openTest(t, Options{Path: path, Required: required, Queue: 2})
			_, err := call(l, getMethod, nil)
			require.NoError(t, err)
			require.NoError(t, l.Flush())
			require.NoError(t, os.Remove(path))
			require.NoError(t, os.Mkdir(path, 0o700))
			require.Error(t, l.Reopen())
			assert.False(t, l.Healthy())

			resp, err := call(l, getMethod, nil)
			if required {
				assert.Equal(t, codes.Unavailable, status.Code(err))
				assert.Nil(t, resp, "no data without its record")
				assert.Equal(t, 1.0, value(t, m.refused))
				return
			}
			require.NoError(t, err)
			assert.Equal(t, "answer", resp)
			// The queue holds 2; the third call's record is lost, and counted.
			_, err = call(l, getMethod, nil)
			require.NoError(t, err)
			_, err = call(l, getMethod, nil)
			require.NoError(t, err)
			assert.Equal(t, 1.0, value(t, m.lost.WithLabelValues(lostQueueFull)))
			require.Error(t, l.Close())
			assert.Equal(t, 2.0, value(t, m.lost.WithLabelValues(lostSinkFailing)), "held records unwritten at shutdown")
		})
	}
}

func TestAWatchIsOneRecordWithItsMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l, _ := openTest(t, Options{Path: path})
	err := l.Stream(func(context.Context) string { return "rest" })(nil, &fakeStream{}, &grpc.StreamServerInfo{FullMethod: ServicePrefix + "WatchCreditSessions"},
		func(_ any, ss grpc.ServerStream) error {
			NoteFrom(ss.Context()).SetUser("user-sandbox-1", "")
			for range 3 {
				NoteFrom(ss.Context()).AddSessions(1)
				require.NoError(t, ss.SendMsg("m"))
			}
			return nil
		})
	require.NoError(t, err)
	require.NoError(t, l.Flush())
	recs := readRecords(t, path)
	require.Len(t, recs, 1)
	require.NotNil(t, recs[0].Messages)
	assert.Equal(t, 3, *recs[0].Messages)
	assert.Equal(t, 3, recs[0].Sessions)
	assert.Equal(t, "rest", recs[0].Transport)
	assert.NotEmpty(t, recs[0].WatchStart)
	assert.NotEmpty(t, recs[0].WatchEnd)
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

type fakeStream struct{ grpc.ServerStream }

func (fakeStream) Context() context.Context { return context.Background() }
func (fakeStream) SendMsg(any) error        { return nil }

func TestStdoutGetsTheSameRecords(t *testing.T) {
	var out bytes.Buffer
	l, _ := openTest(t, Options{Path: Stdout, Stdout: &out})
	_, err := call(l, getMethod, nil)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	res, err := Verify(&out, GenesisPrev)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Records)
	assert.Empty(t, res.Breaks)
}

// value reads a counter.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}
