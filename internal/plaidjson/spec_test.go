package plaidjson_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	creditv1 "github.com/creditsessions/creditsessions/gen/plaid/credit/v1"
)

func TestSpecExampleDecodes(t *testing.T) {
	m := decode(t, specExample)

	assert.Equal(t, "Aim3b", m.GetRequestId())
	assert.Empty(t, m.GetAdditionalProperties())
	require.Len(t, m.GetSessions(), 2)

	first := m.GetSessions()[0]
	require.NotNil(t, first.LinkSessionId)
	assert.Equal(t, "356dbb28-7f98-44d1-8e6d-0cec580f3171", first.GetLinkSessionId())
	require.NotNil(t, first.GetSessionStartTime())
	assert.Equal(t, time.Date(2022, 9, 30, 23, 40, 30, 946225000, time.UTC), first.GetSessionStartTime().AsTime())
	assert.Empty(t, first.GetErrors())
	require.NotNil(t, first.GetResults())
	require.Len(t, first.GetResults().GetItemAddResults(), 1)
	itemAdd := first.GetResults().GetItemAddResults()[0]
	assert.Equal(t, "public-sandbox-5c224a01-8314-4491-a06f-39e193d5cddc", itemAdd.GetPublicToken())
	assert.Equal(t, "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op", itemAdd.GetItemId())
	assert.Equal(t, "ins_56", itemAdd.GetInstitutionId())
	require.Len(t, first.GetResults().GetBankIncomeResults(), 1)
	bankIncome := first.GetResults().GetBankIncomeResults()[0]
	assert.Equal(t, creditv1.CreditSessionBankIncomeStatus_CREDIT_SESSION_BANK_INCOME_STATUS_APPROVED, bankIncome.GetStatus())
	assert.IsType(t, &creditv1.CreditSessionBankIncomeResult_Status{}, bankIncome.GetStatusValue())
	assert.Equal(t, "M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op", bankIncome.GetItemId())
	assert.Equal(t, "ins_56", bankIncome.GetInstitutionId())
	assert.Empty(t, first.GetResults().GetBankEmploymentResults())
	assert.Empty(t, first.GetResults().GetPayrollIncomeResults())
	assert.Nil(t, first.GetResults().GetDocumentIncomeResults())

	second := m.GetSessions()[1]
	assert.Equal(t, "f742cae8-31e4-49cc-a621-6cafbdb26fb9", second.GetLinkSessionId())
	assert.Equal(t, time.Date(2022, 9, 26, 23, 40, 30, 946225000, time.UTC), second.GetSessionStartTime().AsTime())
	require.NotNil(t, second.GetResults())
	assert.Empty(t, second.GetResults().GetItemAddResults())
	assert.Empty(t, second.GetResults().GetBankIncomeResults())
	require.Len(t, second.GetResults().GetPayrollIncomeResults(), 1)
	payroll := second.GetResults().GetPayrollIncomeResults()[0]
	require.NotNil(t, payroll.NumPaystubsRetrieved)
	assert.Equal(t, int32(2), payroll.GetNumPaystubsRetrieved())
	require.NotNil(t, payroll.NumW2SRetrieved)
	assert.Equal(t, int32(1), payroll.GetNumW2SRetrieved())
	assert.Equal(t, "ins_92", payroll.GetInstitutionId())
	assert.Nil(t, payroll.InstitutionName, "institution_name was not sent and must not be invented")

	// The same, as one message, so that nothing beyond the checks above was set.
	want := &creditv1.CreditSessionsGetResponse{
		RequestId: "Aim3b",
		Sessions: []*creditv1.CreditSession{
			{
				LinkSessionId:    proto.String("356dbb28-7f98-44d1-8e6d-0cec580f3171"),
				SessionStartTime: &timestamppb.Timestamp{Seconds: 1664581230, Nanos: 946225000},
				Results: &creditv1.CreditSessionResults{
					ItemAddResults: []*creditv1.CreditSessionItemAddResult{{
						PublicToken:   proto.String("public-sandbox-5c224a01-8314-4491-a06f-39e193d5cddc"),
						ItemId:        proto.String("M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op"),
						InstitutionId: proto.String("ins_56"),
					}},
					BankIncomeResults: []*creditv1.CreditSessionBankIncomeResult{{
						StatusValue: &creditv1.CreditSessionBankIncomeResult_Status{
							Status: creditv1.CreditSessionBankIncomeStatus_CREDIT_SESSION_BANK_INCOME_STATUS_APPROVED,
						},
						ItemId:        proto.String("M5eVJqLnv3tbzdngLDp9FL5OlDNxlNhlE55op"),
						InstitutionId: proto.String("ins_56"),
					}},
				},
			},
			{
				LinkSessionId:    proto.String("f742cae8-31e4-49cc-a621-6cafbdb26fb9"),
				SessionStartTime: &timestamppb.Timestamp{Seconds: 1664235630, Nanos: 946225000},
				Results: &creditv1.CreditSessionResults{
					PayrollIncomeResults: []*creditv1.CreditSessionPayrollIncomeResult{{
						NumPaystubsRetrieved: proto.Int32(2),
						NumW2SRetrieved:      proto.Int32(1),
						InstitutionId:        proto.String("ins_92"),
					}},
				},
			},
		},
	}
	requireProtoEqual(t, want, m)
}

func TestSpecExampleEncodesBack(t *testing.T) {
	out := encode(t, decode(t, specExample))

	want := normalise(parseJSON(t, []byte(specExample)))
	got := normalise(parseJSON(t, out))
	assert.Equal(t, want, got, "AppendResponse wrote:\n%s", out)
	// The output is Plaid's JSON as written by us, so it must decode to the same message.
	requireProtoEqual(t, decode(t, specExample), decode(t, string(out)))
}

func TestNormaliseDropsOnlyNullsAndEmptyArrays(t *testing.T) {
	// normalise is what lets TestSpecExampleEncodesBack pass; check it forgives no more.
	tests := []struct {
		name      string
		a, b      string
		wantEqual bool
	}{
		{name: "null member", a: `{"a":1,"b":null}`, b: `{"a":1}`, wantEqual: true},
		{name: "empty array", a: `{"a":[],"b":{"c":[]}}`, b: `{"b":{}}`, wantEqual: true},
		{name: "empty object kept", a: `{"a":{}}`, b: `{}`, wantEqual: false},
		{name: "zero kept", a: `{"a":0}`, b: `{}`, wantEqual: false},
		{name: "empty string kept", a: `{"a":""}`, b: `{}`, wantEqual: false},
		{name: "null element kept", a: `{"a":[null]}`, b: `{}`, wantEqual: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := normalise(parseJSON(t, []byte(tt.a)))
			b := normalise(parseJSON(t, []byte(tt.b)))
			if tt.wantEqual {
				assert.Equal(t, a, b)
			} else {
				assert.NotEqual(t, a, b)
			}
		})
	}
}
