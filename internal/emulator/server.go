package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// shutdownTimeout bounds how long Close waits for requests in flight before cutting them.
const shutdownTimeout = 5 * time.Second

// writeTimeout bounds the writing of one answer; the largest generated one is about 6 MB.
const writeTimeout = 60 * time.Second

// Server is an Emulator listening on a real socket.
type Server struct {
	URL      string    // base URL of the emulator, such as http://127.0.0.1:40123, without a trailing slash
	Emulator *Emulator // the handler, for its Calls and credentials

	http      *http.Server
	served    chan struct{} // closed when the serve goroutine returns
	serveErr  error         // why Serve returned, unless Close made it; read after served is closed
	closeOnce sync.Once
	closeErr  error
}

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves an Emulator for cfg
// in a goroutine until Close.
func Start(addr string, cfg Config) (*Server, error) {
	e := New(cfg)
	return start(addr, e, e)
}

// start serves handler, which is e or, in tests, e wrapped.
func start(addr string, e *Emulator, handler http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("emulator: listen on %s: %w", addr, err)
	}
	shuttingDown := make(chan struct{})
	requestContext := context.WithValue(context.Background(), shutdownKey{}, (<-chan struct{})(shuttingDown))
	s := &Server{
		URL:      "http://" + ln.Addr().String(),
		Emulator: e,
		http: &http.Server{
			Handler:           handler,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			BaseContext:       func(net.Listener) context.Context { return requestContext },
		},
		served: make(chan struct{}),
	}
	// Close lets requests in flight finish, but a stall has nothing to finish: it ends
	// when Close begins, so that Close need not wait out its grace period.
	var shutdownOnce sync.Once
	s.http.RegisterOnShutdown(func() { shutdownOnce.Do(func() { close(shuttingDown) }) })
	go func() {
		defer close(s.served)
		if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = fmt.Errorf("emulator: serve: %w", err)
		}
	}()
	return s, nil
}

// shutdownKey keys, in every request context, a channel closed when Close begins.
type shutdownKey struct{}

// shutdownSignal is the channel closed when the server of ctx's request begins to shut
// down; nil, which never fires, for a server that Start did not make.
func shutdownSignal(ctx context.Context) <-chan struct{} {
	ch, _ := ctx.Value(shutdownKey{}).(<-chan struct{})
	return ch
}

// Close stops the server: it stops accepting, lets requests in flight finish for up to a
// few seconds, then closes every connection, and returns once the serve goroutine has
// ended. Calling it again returns the first call's result.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		var errs []error
		if err := s.http.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("emulator: graceful shutdown: %w", err))
			if err := s.http.Close(); err != nil {
				errs = append(errs, fmt.Errorf("emulator: close: %w", err))
			}
		}
		<-s.served
		errs = append(errs, s.serveErr)
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}
