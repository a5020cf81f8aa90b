package auth

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"google.golang.org/grpc"
)

func TestWatchCountIsPerCaller(t *testing.T) {
	w := newWatchCount(2)
	assert.True(t, w.acquire("id:a"))
	assert.True(t, w.acquire("id:a"))
	assert.False(t, w.acquire("id:a"), "a's third")
	assert.True(t, w.acquire("id:b"), "b is not a")
	w.release("id:a")
	assert.True(t, w.acquire("id:a"), "a place given back")
	w.release("id:a")
	w.release("id:a")
	w.release("id:b")
	assert.Empty(t, w.open, "callers without watches are forgotten")
}

func TestIsWatch(t *testing.T) {
	for _, tc := range []struct {
		info grpc.StreamServerInfo
		want bool
	}{
		{grpc.StreamServerInfo{FullMethod: "/plaid.credit.v1.CreditService/WatchCreditSessions", IsServerStream: true}, true},
		{grpc.StreamServerInfo{FullMethod: "/grpc.health.v1.Health/Watch", IsServerStream: true}, false},
		{grpc.StreamServerInfo{FullMethod: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", IsServerStream: true, IsClientStream: true}, false},
	} {
		assert.Equal(t, tc.want, isWatch(&tc.info), tc.info.FullMethod)
	}
}
