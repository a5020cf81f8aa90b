package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// File names, as the metrics and logs call them.
const (
	FileTLSCert       = "tls_cert"
	FileClientCA      = "client_ca"
	FileJWKS          = "jwt_jwks"
	FileAuthzPolicy   = "authz_policy"
	FilePlaidClientID = "plaid_client_id"
	FilePlaidSecret   = "plaid_secret"
)

// DefaultReloadEvery is how often a file in use is looked at again.
const DefaultReloadEvery = time.Second

// maxFileBytes bounds what a watched file may hold: certificates, keys, key sets,
// policies and secrets are kilobytes.
const maxFileBytes = 1 << 20

// Observer hears how each load of a watched file went. Metrics implements it.
type Observer interface {
	FileLoaded(name string, ok bool)
}

// File is the parsed content of one or more files on disk (a certificate and its key
// are read together), read again when it is used and the last look is older than its
// interval. The look is by content, not by inotify or modification time: cert-manager
// and Kubernetes Secret volumes swap a symbolic link, SPIFFE helpers rename files into
// place, and both preserve neither the inode nor always the time. A change that does not
// parse keeps the previous value, and says so in the log and through the Observer.
//
// Reading happens on the goroutine that calls Get, at most once an interval and by one
// goroutine at a time; the others meanwhile get the current value. Files of a few
// kilobytes, read once a second, cost nothing measurable.
type File[T any] struct {
	name     string
	paths    []string
	parse    func(contents [][]byte) (T, error)
	every    time.Duration
	logger   *slog.Logger
	observer Observer

	current atomic.Pointer[loaded[T]]
	checked atomic.Int64 // unix nanoseconds of the last look
	reading sync.Mutex
	lastBad []byte // contents that failed to parse, so a broken file is reported once
}

type loaded[T any] struct {
	value T
	raw   []byte
}

// WatchFile loads paths with parse and returns the File, or the error of the first
// load: a file that cannot be read or parsed at start stops start-up.
func WatchFile[T any](name string, paths []string, every time.Duration, logger *slog.Logger, observer Observer,
	parse func(contents [][]byte) (T, error)) (*File[T], error) {
	if every <= 0 {
		every = DefaultReloadEvery
	}
	if logger == nil {
		logger = slog.Default()
	}
	f := &File[T]{name: name, paths: paths, parse: parse, every: every, logger: logger, observer: observer}
	raw, contents, err := f.read()
	if err == nil {
		var v T
		if v, err = parse(contents); err == nil {
			f.current.Store(&loaded[T]{value: v, raw: raw})
			f.checked.Store(time.Now().UnixNano())
			f.observe(true)
			return f, nil
		}
	}
	f.observe(false)
	return nil, fmt.Errorf("%s: %w", name, err)
}

// Get returns the current value, looking at the files again first when the last look
// is older than the interval.
func (f *File[T]) Get() T {
	if time.Now().UnixNano()-f.checked.Load() >= int64(f.every) && f.reading.TryLock() {
		f.refresh()
		f.reading.Unlock()
	}
	return f.current.Load().value
}

// Refresh looks at the files now.
func (f *File[T]) Refresh() {
	f.reading.Lock()
	defer f.reading.Unlock()
	f.refresh()
}

func (f *File[T]) refresh() {
	f.checked.Store(time.Now().UnixNano())
	raw, contents, err := f.read()
	if err == nil && bytes.Equal(raw, f.current.Load().raw) {
		return
	}
	if err == nil && f.lastBad != nil && bytes.Equal(raw, f.lastBad) {
		return // reported already
	}
	if err == nil {
		var v T
		if v, err = f.parse(contents); err == nil {
			// Said before it takes effect, so whoever sees the new value finds the line.
			f.logger.Info("reloaded a changed file", "file", f.name)
			f.current.Store(&loaded[T]{value: v, raw: raw})
			f.lastBad = nil
			f.observe(true)
			return
		}
		f.lastBad = raw
	}
	// The error of a parser never holds the file's contents (see the parsers' tests).
	f.logger.Error("a changed file could not be loaded: keeping the previous one", "file", f.name, "error", err)
	f.observe(false)
}

func (f *File[T]) observe(ok bool) {
	if f.observer != nil {
		f.observer.FileLoaded(f.name, ok)
	}
}

// read returns every file's contents, and all of them joined, to compare.
func (f *File[T]) read() ([]byte, [][]byte, error) {
	contents := make([][]byte, len(f.paths))
	var all []byte
	for i, p := range f.paths {
		data, err := readLimited(p)
		if err != nil {
			return nil, nil, err
		}
		contents[i] = data
		all = append(all, data...)
		all = append(all, 0) // so that moving bytes between files is a change
	}
	return all, contents, nil
}

func readLimited(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err // names the path, never the contents
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileBytes {
		return nil, errors.New(path + ": larger than 1 MiB")
	}
	return data, nil
}
