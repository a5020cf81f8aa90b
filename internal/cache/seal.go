package cache

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Keyring holds the AES-256 keys of the fleet's Redis entries: the first seals, every one
// opens. It comes from -cache-key-file: one key a line, 32 bytes in base64 or hex. To
// rotate, put the new key on the first line and keep the old one below it until every
// replica has re-read the file and -cache-max-age has passed.
type Keyring struct {
	keys []sealKey
}

type sealKey struct {
	id   [4]byte // the first bytes of SHA-256 of the key: which key sealed a value
	aead cipher.AEAD
}

// ParseKeyring reads a key file's contents. Lines that are empty or start with "#" are
// skipped. The error never quotes the file.
func ParseKeyring(contents []byte) (Keyring, error) {
	var kr Keyring
	for n, line := range bytes.Split(contents, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		raw, err := decodeKey(string(line))
		if err != nil {
			return Keyring{}, fmt.Errorf("cache key file, line %d: %w", n+1, err)
		}
		block, err := aes.NewCipher(raw)
		if err != nil {
			return Keyring{}, fmt.Errorf("cache key file, line %d: %w", n+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return Keyring{}, err
		}
		sum := sha256.Sum256(raw)
		kr.keys = append(kr.keys, sealKey{id: [4]byte(sum[:4]), aead: aead})
	}
	if len(kr.keys) == 0 {
		return Keyring{}, errors.New("cache key file: no key (want 32 bytes, base64 or hex, one a line)")
	}
	return kr, nil
}

func decodeKey(s string) ([]byte, error) {
	if raw, err := hex.DecodeString(s); err == nil && len(raw) == 32 {
		return raw, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(s); err == nil && len(raw) == 32 {
			return raw, nil
		}
	}
	return nil, errors.New("not a 32-byte key in base64 or hex")
}

// Sealed values: a version byte, the key id (4), the nonce (12), then AES-GCM's output.
const (
	sealVersion  = 1
	sealOverhead = 1 + 4 + 12 + 16
)

// sealer seals with the current keyring and opens with it, and also with the keys of the
// keyrings it replaced within the last grace (a rotation that dropped the old key from
// the file at once still opens what other replicas sealed with it meanwhile).
type sealer struct {
	current func() Keyring
	grace   time.Duration
	now     func() time.Time

	mu       sync.Mutex
	lastSeen []byte  // ids of the current keyring when last looked at
	prevRing Keyring // that keyring
	retired  []retiredKey
}

type retiredKey struct {
	key   sealKey
	until time.Time
}

func (s *sealer) keyring() (Keyring, []sealKey) {
	kr := s.current()
	ids := make([]byte, 0, 4*len(kr.keys))
	for _, k := range kr.keys {
		ids = append(ids, k.id[:]...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if s.lastSeen != nil && !bytes.Equal(ids, s.lastSeen) {
		// Keys that left the file stay usable for opening until grace has passed.
		for i := 0; i+4 <= len(s.lastSeen); i += 4 {
			id := [4]byte(s.lastSeen[i : i+4])
			if !kr.has(id) {
				if k, ok := s.prev(id); ok {
					s.retired = append(s.retired, retiredKey{key: k, until: now.Add(s.grace)})
				}
			}
		}
	}
	s.lastSeen = ids
	s.prevRing = kr
	live := s.retired[:0]
	for _, r := range s.retired {
		if now.Before(r.until) {
			live = append(live, r)
		}
	}
	s.retired = live
	extra := make([]sealKey, len(live))
	for i, r := range live {
		extra[i] = r.key
	}
	return kr, extra
}

func (kr Keyring) has(id [4]byte) bool {
	for _, k := range kr.keys {
		if k.id == id {
			return true
		}
	}
	return false
}

func (s *sealer) prev(id [4]byte) (sealKey, bool) {
	for _, k := range s.prevRing.keys {
		if k.id == id {
			return k, true
		}
	}
	return sealKey{}, false
}

// seal encrypts plaintext for the Redis name aad: a value copied under another name does
// not open.
func (s *sealer) seal(plaintext []byte, aad string) []byte {
	kr, _ := s.keyring()
	k := kr.keys[0]
	out := make([]byte, 1+4+12, sealOverhead+len(plaintext))
	out[0] = sealVersion
	copy(out[1:5], k.id[:])
	_, _ = rand.Read(out[5:17])
	return k.aead.Seal(out, out[5:17], plaintext, []byte(aad))
}

var errUnsealed = errors.New("cache: value does not open with any key")

func (s *sealer) open(value []byte, aad string) ([]byte, error) {
	if len(value) < sealOverhead || value[0] != sealVersion {
		return nil, errUnsealed
	}
	id := [4]byte(value[1:5])
	kr, retired := s.keyring()
	for _, k := range append(kr.keys, retired...) {
		if k.id != id {
			continue
		}
		if plain, err := k.aead.Open(nil, value[5:17], value[17:], []byte(aad)); err == nil {
			return plain, nil
		}
	}
	return nil, errUnsealed
}
