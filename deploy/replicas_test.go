package deploy_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creditsessions/creditsessions/client"
	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// replicaHosts stand for three pods: one port, three addresses, as a headless Service's
// DNS name resolves to.
var replicaHosts = []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}

// sharedPorts finds gRPC, REST and admin ports free on every replica host.
func sharedPorts(t *testing.T) [3]int {
	t.Helper()
	for range 20 {
		var ports [3]int
		for i := range ports {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			ports[i] = ln.Addr().(*net.TCPAddr).Port
			_ = ln.Close()
		}
		free := true
		for _, h := range replicaHosts {
			for _, p := range ports {
				ln, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
				if err != nil {
					free = false
					continue
				}
				_ = ln.Close()
			}
		}
		if free {
			return ports
		}
	}
	t.Fatal("no ports free on all of " + strings.Join(replicaHosts, ", "))
	return [3]int{}
}

// replica is one creditsessionsd process, on the embedded emulator.
type replica struct {
	host  string
	ports [3]int
	cmd   *exec.Cmd
	done  chan struct{}
	err   error
	logs  *syncBuffer
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (r *replica) start(t *testing.T, bin string) {
	t.Helper()
	addr := func(i int) string { return net.JoinHostPort(r.host, strconv.Itoa(r.ports[i])) }
	r.cmd = exec.Command(bin,
		"-grpc-addr="+addr(0), "-http-addr="+addr(1), "-admin-addr="+addr(2),
		// As the manifests do, shorter: health turns NOT_SERVING, clients leave, then
		// the listeners close.
		"-shutdown-drain=1s", "-shutdown-grace=5s", "-log-format=json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PLAID_") && !strings.HasPrefix(kv, "OTEL_") {
			r.cmd.Env = append(r.cmd.Env, kv)
		}
	}
	r.logs = &syncBuffer{}
	r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, r.cmd.Start())
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		r.err = cmd.Wait()
		close(done)
	}(r.cmd, r.done)

	ready := "http://" + addr(2) + "/readyz"
	exited := func() bool {
		select {
		case <-r.done:
			return true
		default:
			return false
		}
	}
	require.Eventually(t, func() bool {
		if exited() {
			return true
		}
		resp, err := http.Get(ready)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 20*time.Millisecond, "replica %s ready", r.host)
	require.False(t, exited(), "replica %s exited: %v\n%s", r.host, r.err, r.logs)
}

// stop sends SIGTERM and waits for a clean exit.
func (r *replica) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, r.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case <-r.done:
		require.NoError(t, r.err, "replica %s exits 0 on SIGTERM\n%s", r.host, r.logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("replica %s did not exit within 30s of SIGTERM", r.host)
	}
}

// tally counts calls by the replica that answered, and failures.
type tally struct {
	mu       sync.Mutex
	byHost   map[string]int
	failures []string
}

func (l *tally) served() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]int{}
	for h, n := range l.byHost {
		out[h] = n
	}
	return out
}

// TestReplicasActAsOneServiceThroughARollingRestart runs three replicas of the built
// binary as three pods behind one name, the client package dialing all three with its
// default service config, under steady load, and restarts each replica in turn as a
// rolling update does. No call may fail, and every replica serves a share.
func TestReplicasActAsOneServiceThroughARollingRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three service processes and restarts them: not in -short")
	}
	bin := serviceBinary(t)
	ports := sharedPorts(t)
	replicas := make([]*replica, len(replicaHosts))
	for i, h := range replicaHosts {
		replicas[i] = &replica{host: h, ports: ports}
		replicas[i].start(t, bin)
	}
	t.Cleanup(func() {
		for _, r := range replicas {
			select {
			case <-r.done:
			default:
				_ = r.cmd.Process.Kill()
				<-r.done
			}
		}
	})

	// In Kubernetes the client dials dns:///creditsessions-grpc.NS.svc.cluster.local:50051
	// and DNS answers with the pods' addresses; here a manual resolver answers with the
	// three loopback addresses. Everything else is the client package's default.
	res := manual.NewBuilderWithScheme("replicas")
	var endpoints []resolver.Endpoint
	for _, h := range replicaHosts {
		endpoints = append(endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: net.JoinHostPort(h, strconv.Itoa(ports[0]))}}})
	}
	res.InitialState(resolver.State{Endpoints: endpoints})
	c, err := client.Dial("replicas:///creditsessions", grpc.WithResolvers(res), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer c.Close()

	// Steady load: up to 400 calls a second from 8 workers, each call for a different user.
	counts := &tally{byHost: map[string]int{}}
	ctx, stopLoad := context.WithCancel(context.Background())
	ticks := time.NewTicker(time.Second / 400)
	defer ticks.Stop()
	var workers sync.WaitGroup
	var seq sync.Mutex
	n := 0
	for range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case <-ticks.C:
				}
				seq.Lock()
				n++
				token := fmt.Sprintf("user-sandbox-example#%d", n)
				seq.Unlock()
				var p peer.Peer
				callCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := c.CreditSessionsGet(callCtx, &creditv1.CreditSessionsGetRequest{UserToken: token}, grpc.Peer(&p))
				cancel()
				counts.mu.Lock()
				if err != nil {
					counts.failures = append(counts.failures, err.Error())
				} else {
					host, _, _ := net.SplitHostPort(p.Addr.String())
					counts.byHost[host]++
				}
				counts.mu.Unlock()
			}
		}()
	}
	defer func() { stopLoad(); workers.Wait() }()

	allServe := func(since map[string]int, what string) {
		t.Helper()
		require.Eventually(t, func() bool {
			now := counts.served()
			for _, h := range replicaHosts {
				if now[h] <= since[h]+20 {
					return false
				}
			}
			return true
		}, 30*time.Second, 10*time.Millisecond, "every replica serves calls %s: %v", what, counts.served())
	}
	start := time.Now()
	allServe(nil, "before the restart")

	type restart struct {
		host      string
		stopTook  time.Duration
		backAfter time.Duration
	}
	var restarts []restart
	for _, r := range replicas {
		before := counts.served()
		began := time.Now()
		r.stop(t)
		stopped := time.Since(began)
		r.start(t, bin)
		allServe(before, "after restarting "+r.host)
		restarts = append(restarts, restart{host: r.host, stopTook: stopped, backAfter: time.Since(began)})
	}
	final := counts.served()
	allServe(final, "after the rolling restart")
	stopLoad()
	workers.Wait()
	elapsed := time.Since(start)

	served := counts.served()
	total := 0
	for _, h := range replicaHosts {
		total += served[h]
	}
	counts.mu.Lock()
	failures := append([]string(nil), counts.failures...)
	counts.mu.Unlock()

	var report strings.Builder
	fmt.Fprintf(&report, "three replicas, one rolling restart, %v of steady load (%.0f calls/s): %d calls, %d failed\n",
		elapsed.Round(100*time.Millisecond), float64(total+len(failures))/elapsed.Seconds(), total+len(failures), len(failures))
	for _, h := range replicaHosts {
		fmt.Fprintf(&report, "  %s served %d (%.1f%%)\n", h, served[h], 100*float64(served[h])/float64(total))
	}
	for _, r := range restarts {
		fmt.Fprintf(&report, "  %s: SIGTERM to exit %v, SIGTERM to serving calls again %v\n", r.host, r.stopTook.Round(10*time.Millisecond), r.backAfter.Round(10*time.Millisecond))
	}
	t.Log("\n" + report.String())

	if len(failures) > 5 {
		failures = failures[:5]
	}
	assert.Empty(t, failures, "no call fails through a rolling restart")
	for _, h := range replicaHosts {
		assert.Greater(t, float64(served[h])/float64(total), 0.15, "%s serves a share", h)
	}
}
