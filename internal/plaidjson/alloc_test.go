package plaidjson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// The decoder allocates in chunks and reads keys by guessing their order (see
// alloc.go and scanner.go); these tests check what that must not change.

func TestNoListNestsItsOwnType(t *testing.T) {
	// The decoder builds a list of a message type in place at the end of one chunk, so
	// it cannot read a list of a type inside an element of a list of the same type.
	var below func(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool, visit func(protoreflect.FieldDescriptor))
	below = func(md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool, visit func(protoreflect.FieldDescriptor)) {
		if seen[md.FullName()] || isWellKnown(md) {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			if fd.Message() != nil && !fd.IsMap() {
				visit(fd)
				below(fd.Message(), seen, visit)
			}
		}
	}
	var lists int
	below((&creditv1.CreditSessionsGetResponse{}).ProtoReflect().Descriptor(), map[protoreflect.FullName]bool{}, func(list protoreflect.FieldDescriptor) {
		if !list.IsList() {
			return
		}
		lists++
		below(list.Message(), map[protoreflect.FullName]bool{}, func(fd protoreflect.FieldDescriptor) {
			assert.False(t, fd.IsList() && fd.Message().FullName() == list.Message().FullName(),
				"%s holds a list of its own type, %s", list.FullName(), fd.FullName())
		})
	})
	require.GreaterOrEqual(t, lists, 6, "the walk found the schema's lists")
}

func TestDecodedListsHaveNoSpareCapacity(t *testing.T) {
	// Lists are cut from shared chunks; appending to one must not write over the next.
	m := benchResponse(4)
	for _, s := range m.Sessions {
		s.Errors = []*creditv1.CreditSessionError{{ErrorCode: proto.String("A")}, {ErrorCode: proto.String("B")}}
	}
	got := decode(t, string(encode(t, m)))
	requireProtoEqual(t, m, got)

	require.Equal(t, len(got.Sessions), cap(got.Sessions))
	for _, s := range got.Sessions {
		require.Equal(t, len(s.Errors), cap(s.Errors))
		items := s.GetResults().GetItemAddResults()
		require.Equal(t, len(items), cap(items))
	}
	got.Sessions[0].Errors = append(got.Sessions[0].Errors, &creditv1.CreditSessionError{ErrorCode: proto.String("C")})
	got.Sessions[0].Results.ItemAddResults = append(got.Sessions[0].Results.ItemAddResults, &creditv1.CreditSessionItemAddResult{})
	got.Sessions = append(got.Sessions, &creditv1.CreditSession{})
	for i, s := range got.Sessions[1:4] {
		requireProtoEqual(t, m.Sessions[i+1], s, "session %d changed when another list grew", i+1)
	}
}

func TestDecodedMessagesDoNotKeepTheBody(t *testing.T) {
	// The caller may reuse the body's buffer once UnmarshalResponse returns. Many long
	// strings, so that they fill several chunks of the decoder's own.
	m := benchResponse(3000)
	for i, s := range m.Sessions {
		s.Errors = []*creditv1.CreditSessionError{{
			ErrorMessage:   proto.String(strings.Repeat(strconv.Itoa(i), 40)),
			DisplayMessage: proto.String("é \"escaped\" " + strconv.Itoa(i)),
		}}
	}
	m.AdditionalProperties = decode(t, `{"x":{"k":["v",1]}}`).AdditionalProperties
	body := encode(t, m)

	got := new(creditv1.CreditSessionsGetResponse)
	require.NoError(t, plaidjson.UnmarshalResponse(body, got))
	for i := range body {
		body[i] = 'x'
	}
	requireProtoEqual(t, m, got)
}

func TestListsAcrossChunksRoundTrip(t *testing.T) {
	// Lists of every length from 0 up, one after another, so that many of them
	// straddle the end of a chunk and move to the next.
	m := &creditv1.CreditSessionsGetResponse{RequestId: "r"}
	for i := range 2500 {
		s := &creditv1.CreditSession{LinkSessionId: proto.String(strconv.Itoa(i)), Results: &creditv1.CreditSessionResults{}}
		for j := range i % 7 {
			s.Errors = append(s.Errors, &creditv1.CreditSessionError{ErrorType: proto.String(fmt.Sprint(i, j))})
		}
		for j := range i % 4 {
			s.Results.PayrollIncomeResults = append(s.Results.PayrollIncomeResults,
				&creditv1.CreditSessionPayrollIncomeResult{NumW2SRetrieved: proto.Int32(int32(j))})
		}
		m.Sessions = append(m.Sessions, s)
	}
	requireProtoEqual(t, m, decode(t, string(encode(t, m))))
}

func TestMemberOrderSpellingAndSpacingDoNotMatter(t *testing.T) {
	// The decoder expects members in the order AppendResponse writes them, compactly;
	// any other order, escaped keys and white space must decode the same.
	bodies := map[string][]byte{"spec_example": []byte(specExample), "bench": encode(t, benchResponse(5))}
	for member := range 2 {
		for variant := range 5 {
			bodies[fmt.Sprintf("full_%d_%d", member, variant)] = encode(t, fullResponse(t, fillOptions{member: nthMember(member), variant: variant, extras: true}))
		}
	}
	for name, body := range bodies {
		want := decode(t, string(body))
		for _, style := range []rewriteStyle{
			{reverse: true},
			{escapeKeys: true},
			{indent: true},
			{reverse: true, escapeKeys: true, indent: true},
			{swapPairs: true},
		} {
			t.Run(fmt.Sprintf("%s/%+v", name, style), func(t *testing.T) {
				rewritten := rewrite(t, body, style)
				requireProtoEqual(t, want, decode(t, string(rewritten)), "body: %s", rewritten)
			})
		}
	}
}

// rewriteStyle says how rewrite writes a JSON body back.
type rewriteStyle struct {
	reverse    bool // every object's members in reverse order
	swapPairs  bool // every object's members swapped in pairs: 2 1 4 3 ...
	escapeKeys bool // every letter of every key as a \u escape
	indent     bool // white space around every token
}

// rewrite writes body back in style, keeping its members and values.
func rewrite(t testing.TB, body []byte, style rewriteStyle) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var out strings.Builder
	var value func()
	space := func() {
		if style.indent {
			out.WriteString(" \n\t")
		}
	}
	value = func() {
		tok, err := dec.Token()
		require.NoError(t, err)
		space()
		switch tok := tok.(type) {
		case json.Delim:
			switch tok {
			case '{':
				type member struct{ key, value string }
				var members []member
				for dec.More() {
					key, err := dec.Token()
					require.NoError(t, err)
					saved := out.String()
					out.Reset()
					value()
					members = append(members, member{key.(string), out.String()})
					out.Reset()
					out.WriteString(saved)
				}
				_, err := dec.Token() // '}'
				require.NoError(t, err)
				if style.reverse {
					for i, j := 0, len(members)-1; i < j; i, j = i+1, j-1 {
						members[i], members[j] = members[j], members[i]
					}
				}
				if style.swapPairs {
					for i := 0; i+1 < len(members); i += 2 {
						members[i], members[i+1] = members[i+1], members[i]
					}
				}
				out.WriteByte('{')
				for i, m := range members {
					if i > 0 {
						out.WriteByte(',')
					}
					space()
					out.WriteString(quoteKey(t, m.key, style.escapeKeys))
					space()
					out.WriteByte(':')
					out.WriteString(m.value)
				}
				space()
				out.WriteByte('}')
			case '[':
				out.WriteByte('[')
				for i := 0; dec.More(); i++ {
					if i > 0 {
						out.WriteByte(',')
					}
					value()
				}
				_, err := dec.Token() // ']'
				require.NoError(t, err)
				space()
				out.WriteByte(']')
			}
		case json.Number:
			out.WriteString(tok.String())
		default:
			b, err := json.Marshal(tok)
			require.NoError(t, err)
			out.Write(b)
		}
		space()
	}
	value()
	return []byte(out.String())
}

func quoteKey(t testing.TB, key string, escape bool) string {
	t.Helper()
	if !escape {
		b, err := json.Marshal(key)
		require.NoError(t, err)
		return string(b)
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range key {
		if r < 0x80 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r >= '0' && r <= '9') {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		q, err := json.Marshal(string(r))
		require.NoError(t, err)
		b.Write(q[1 : len(q)-1])
	}
	b.WriteByte('"')
	return b.String()
}
