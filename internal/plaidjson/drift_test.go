package plaidjson_test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
	"github.com/creditsessions/creditsessions/internal/plaidjson"
)

// The tests in this file build their messages by walking the proto descriptors, never
// from a list of fields. A field added to the contract is therefore set here at once,
// and the round trip fails until the codec carries it.

// fillOptions chooses among the values fill can give.
type fillOptions struct {
	// member picks the member of a oneof to set.
	member func(protoreflect.OneofDescriptor) protoreflect.FieldDescriptor
	// variant picks the enum value (among the non-zero ones), the int32 value and the
	// timestamp's fraction, so that several runs together cover more values.
	variant int
	// extras sets map fields, that is additional_properties.
	extras bool
}

// nthMember returns a member picker that sets the n-th member of every oneof (wrapping
// round in shorter oneofs).
func nthMember(n int) func(protoreflect.OneofDescriptor) protoreflect.FieldDescriptor {
	return func(od protoreflect.OneofDescriptor) protoreflect.FieldDescriptor {
		return od.Fields().Get(n % od.Fields().Len())
	}
}

// namedMember picks the member of a status oneof that holds a value the contract names.
func namedMember(od protoreflect.OneofDescriptor) protoreflect.FieldDescriptor {
	for i := range od.Fields().Len() {
		if fd := od.Fields().Get(i); fd.Kind() == protoreflect.EnumKind {
			return fd
		}
	}
	panic("oneof " + string(od.FullName()) + " has no enum member")
}

// fullResponse builds a response in which every field of every nested message is set
// to a value that is not its zero value, with one element in each repeated field.
func fullResponse(t testing.TB, opt fillOptions) *creditv1.CreditSessionsGetResponse {
	t.Helper()
	m := new(creditv1.CreditSessionsGetResponse)
	fill(t, m.ProtoReflect(), opt)
	requireAllSet(t, m.ProtoReflect(), opt)
	return m
}

func fill(t testing.TB, m protoreflect.Message, opt fillOptions) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() && opt.member(od) != fd {
			continue
		}
		switch {
		case fd.IsMap():
			if !opt.extras {
				continue
			}
			require.Equal(t, protoreflect.StringKind, fd.MapKey().Kind(), "fill knows string-keyed maps only: %s", fd.FullName())
			key := protoreflect.ValueOfString("extra_" + string(fd.Name())).MapKey()
			m.Mutable(fd).Map().Set(key, fillValue(t, fd.MapValue(), m.Mutable(fd).Map().NewValue(), opt))
		case fd.IsList():
			list := m.Mutable(fd).List()
			list.Append(fillValue(t, fd, list.NewElement(), opt))
		case fd.Message() != nil:
			m.Set(fd, fillValue(t, fd, m.NewField(fd), opt))
		default:
			m.Set(fd, fillValue(t, fd, protoreflect.Value{}, opt))
		}
	}
}

// fillValue returns a value for one element of fd. For a message, blank is a new,
// empty message of fd's type to fill.
func fillValue(t testing.TB, fd protoreflect.FieldDescriptor, blank protoreflect.Value, opt fillOptions) protoreflect.Value {
	t.Helper()
	switch fd.Kind() {
	case protoreflect.StringKind:
		// Not a status Plaid names, so unrecognized_status stays unrecognized; and
		// with characters that must be escaped, so strings are tested on every field.
		return protoreflect.ValueOfString(string(fd.Name()) + ` "é\ 😀` + "\n")
	case protoreflect.Int32Kind:
		values := []int32{int32(fd.Number()) * 7919, math.MaxInt32 - int32(fd.Number()), math.MinInt32 + int32(fd.Number())}
		return protoreflect.ValueOfInt32(values[opt.variant%len(values)])
	case protoreflect.EnumKind:
		values := fd.Enum().Values()
		require.Greater(t, values.Len(), 1, "enum %s has no value but its zero", fd.Enum().FullName())
		return protoreflect.ValueOfEnum(values.Get(1 + opt.variant%(values.Len()-1)).Number())
	case protoreflect.MessageKind:
		msg := blank.Message()
		switch msg.Descriptor().FullName() {
		case "google.protobuf.Timestamp":
			nanos := []int{946225000, 0, 123, 5000000, 999999999}[opt.variant%5]
			ts := timestamppb.New(time.Date(2022, 9, 30, 23, 40, 30, nanos, time.UTC))
			return protoreflect.ValueOfMessage(ts.ProtoReflect())
		case "google.protobuf.Value":
			v, err := structpb.NewValue(map[string]any{
				"list":   []any{1.25, -0.5, 1e300, "s", true, false, nil, map[string]any{}, []any{}},
				"nested": map[string]any{"deeper": map[string]any{"n": 7.0}},
			})
			require.NoError(t, err)
			return protoreflect.ValueOfMessage(v.ProtoReflect())
		}
		require.False(t, isWellKnown(msg.Descriptor()), "fill does not know %s: teach it, and check the codec", msg.Descriptor().FullName())
		fill(t, msg, opt)
		return blank
	default:
		require.Failf(t, "fill does not know this kind of field",
			"%s is %s: teach fill to set it, and check the codec carries it", fd.FullName(), fd.Kind())
		return protoreflect.Value{}
	}
}

// requireAllSet checks fill's work: every field set, all the way down, so that a bug in
// fill cannot make the drift guard vacuous.
func requireAllSet(t testing.TB, m protoreflect.Message, opt fillOptions) {
	t.Helper()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			require.Equal(t, opt.member(od), m.WhichOneof(od), "%s", od.FullName())
			continue
		}
		if fd.IsMap() && !opt.extras {
			continue
		}
		require.True(t, m.Has(fd), "fill left %s unset", fd.FullName())
		switch {
		case fd.IsMap():
		case fd.IsList():
			list := m.Get(fd).List()
			require.Equal(t, 1, list.Len(), "%s", fd.FullName())
			if fd.Message() != nil {
				requireAllSet(t, list.Get(0).Message(), opt)
			}
		case fd.Message() != nil && !isWellKnown(fd.Message()):
			requireAllSet(t, m.Get(fd).Message(), opt)
		}
	}
}

// shape measures the descriptors: the largest oneof and the largest enum, so that the
// variants below reach every oneof member and every enum value.
func shape(md protoreflect.MessageDescriptor) (maxOneof, maxEnum int) {
	seen := map[protoreflect.FullName]bool{}
	var walk func(md protoreflect.MessageDescriptor)
	walk = func(md protoreflect.MessageDescriptor) {
		if seen[md.FullName()] || isWellKnown(md) {
			return
		}
		seen[md.FullName()] = true
		for i := range md.Oneofs().Len() {
			if od := md.Oneofs().Get(i); !od.IsSynthetic() {
				maxOneof = max(maxOneof, od.Fields().Len())
			}
		}
		for i := range md.Fields().Len() {
			fd := md.Fields().Get(i)
			if fd.Enum() != nil {
				maxEnum = max(maxEnum, fd.Enum().Values().Len()-1)
			}
			if fd.Message() != nil {
				walk(fd.Message())
			}
		}
	}
	walk(md)
	return maxOneof, maxEnum
}

func TestDriftGuardRoundTrip(t *testing.T) {
	maxOneof, maxEnum := shape((&creditv1.CreditSessionsGetResponse{}).ProtoReflect().Descriptor())
	require.GreaterOrEqual(t, maxOneof, 2, "the status oneofs have two members")
	require.GreaterOrEqual(t, maxEnum, 5, "the status enums have five named values")

	for member := range maxOneof {
		for variant := range maxEnum {
			t.Run(fmt.Sprintf("oneof_member_%d/variant_%d", member, variant), func(t *testing.T) {
				want := fullResponse(t, fillOptions{member: nthMember(member), variant: variant, extras: true})
				out := encode(t, want)
				got := new(creditv1.CreditSessionsGetResponse)
				require.NoError(t, plaidjson.UnmarshalResponse(out, got), "body: %s", out)
				requireProtoEqual(t, want, got, "body: %s", out)
			})
		}
	}
}

func TestDriftGuardAgreesWithProtojson(t *testing.T) {
	_, maxEnum := shape((&creditv1.CreditSessionsGetResponse{}).ProtoReflect().Descriptor())
	messages := map[string]*creditv1.CreditSessionsGetResponse{"spec_example": decode(t, specExample)}
	for variant := range maxEnum {
		messages[fmt.Sprintf("full_variant_%d", variant)] = fullResponse(t, fillOptions{member: namedMember, variant: variant})
	}

	for name, m := range messages {
		t.Run(name, func(t *testing.T) {
			pj, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
			require.NoError(t, err)
			plaidShaped := unprefixEnums(t, parseJSON(t, pj), m.ProtoReflect().Descriptor())

			ours := encode(t, m)
			assert.Equal(t, plaidShaped, parseJSON(t, ours), "protojson (enums un-prefixed) and AppendResponse disagree:\nprotojson: %s\nours:      %s", pj, ours)

			// And the other way: protojson's data, in Plaid's spelling, decodes to m.
			body, err := json.Marshal(plaidShaped)
			require.NoError(t, err)
			got := new(creditv1.CreditSessionsGetResponse)
			require.NoError(t, plaidjson.UnmarshalResponse(body, got))
			assertProtoEqual(t, m, got)
		})
	}
}

// unprefixEnums rewrites protojson's enum names (CREDIT_SESSION_BANK_INCOME_STATUS_APPROVED)
// into Plaid's (APPROVED) wherever md says a member is an enum.
func unprefixEnums(t testing.TB, v any, md protoreflect.MessageDescriptor) any {
	t.Helper()
	obj, ok := v.(map[string]any)
	if !ok || isWellKnown(md) {
		return v
	}
	for key, x := range obj {
		fd := md.Fields().ByName(protoreflect.Name(key))
		require.NotNil(t, fd, "protojson wrote %q, which %s does not have", key, md.FullName())
		switch {
		case fd.Enum() != nil:
			s, ok := x.(string)
			require.True(t, ok, "protojson wrote %s as %T", fd.FullName(), x)
			prefix := enumPrefix(fd.Enum())
			require.True(t, strings.HasPrefix(s, prefix), "%s lacks the prefix %s", s, prefix)
			obj[key] = strings.TrimPrefix(s, prefix)
		case fd.IsList() && fd.Message() != nil:
			for i, el := range x.([]any) {
				x.([]any)[i] = unprefixEnums(t, el, fd.Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			obj[key] = unprefixEnums(t, x, fd.Message())
		}
	}
	return obj
}

// enumPrefix is the prefix buf's ENUM_VALUE_PREFIX rule puts on every value name: the
// enum's name in UPPER_SNAKE_CASE, then "_".
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	var b strings.Builder
	for i, r := range string(ed.Name()) {
		if unicode.IsUpper(r) && i > 0 {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String() + "_"
}

func TestEnumPrefixFitsEveryValue(t *testing.T) {
	// The codec spells statuses as the value names less this prefix; a value that
	// breaks the pattern would reach Plaid with our prefix on.
	for _, ed := range []protoreflect.EnumDescriptor{
		creditv1.CreditSessionBankIncomeStatus(0).Descriptor(),
		creditv1.CreditSessionBankEmploymentStatus(0).Descriptor(),
	} {
		t.Run(string(ed.Name()), func(t *testing.T) {
			prefix := enumPrefix(ed)
			for i := range ed.Values().Len() {
				assert.True(t, strings.HasPrefix(string(ed.Values().Get(i).Name()), prefix), "%s", ed.Values().Get(i).Name())
			}
		})
	}
}
