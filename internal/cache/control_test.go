package cache

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestParseDirectives(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   Directives
	}{
		{"absent", nil, Directives{}},
		{"max-age", []string{"max-age=30"}, Directives{MaxAge: 30 * time.Second, HasMaxAge: true}},
		{"case and spaces", []string{" Max-Age = 30 , NO-CACHE"}, Directives{MaxAge: 30 * time.Second, HasMaxAge: true, NoCache: true}},
		{"quoted", []string{`max-age="7"`}, Directives{MaxAge: 7 * time.Second, HasMaxAge: true}},
		{"several field lines", []string{"no-store", "max-age=5"}, Directives{MaxAge: 5 * time.Second, HasMaxAge: true, NoStore: true}},
		{"the same max-age twice", []string{"max-age=5, max-age=5"}, Directives{MaxAge: 5 * time.Second, HasMaxAge: true}},
		{"conflicting max-ages are ignored", []string{"max-age=5", "max-age=6"}, Directives{}},
		{"not digits", []string{"max-age=-1", "max-age=1.5", "max-age=", "max-age", "max-age=0x10"}, Directives{}},
		{"huge saturates", []string{"max-age=99999999999999999999999"}, Directives{MaxAge: maxDeltaSeconds * time.Second, HasMaxAge: true}},
		{"unknown directives ignored", []string{"only-if-cached, max-stale=10, private"}, Directives{}},
		{"no-cache with fields", []string{`no-cache="x"`}, Directives{NoCache: true}},
		{"zero", []string{"max-age=0"}, Directives{HasMaxAge: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, ParseDirectives(tc.values))
		})
	}
}

func FuzzParseDirectives(f *testing.F) {
	for _, s := range []string{"max-age=30", "no-cache", "no-store, max-age=0", `max-age="5"`, "max-age=99999999999999999999", ",,,=,", strings.Repeat("max-age=1,", 500)} {
		f.Add(s, "max-age=30")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		d := ParseDirectives([]string{a, b})
		if d.MaxAge < 0 || d.MaxAge > maxDeltaSeconds*time.Second {
			t.Fatalf("max-age %v out of range", d.MaxAge)
		}
		if !d.HasMaxAge && d.MaxAge != 0 {
			t.Fatalf("max-age %v without HasMaxAge", d.MaxAge)
		}
		if d != ParseDirectives([]string{a, b}) {
			t.Fatal("not deterministic")
		}
	})
}

func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n"))
	f.Fuzz(func(t *testing.T, contents []byte) {
		kr, err := ParseKeyring(contents)
		if err == nil && len(kr.keys) == 0 {
			t.Fatal("no error and no key")
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimSpace(string(contents))) && len(strings.TrimSpace(string(contents))) > 8 {
			t.Fatalf("the error quotes the file: %v", err)
		}
	})
}
