package plaid_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/creditsessions/creditsessions/internal/emulator"
	"github.com/creditsessions/creditsessions/internal/plaid"
)

// The client pointed at the Plaid emulator; in production BaseURL comes from
// EnvironmentURL and the credentials from the environment.
func ExampleClient_CreditSessionsGet() {
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer emu.Close()

	client, err := plaid.NewClient(plaid.Config{
		BaseURL:     emu.URL,
		Credentials: plaid.Credentials{ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := client.CreditSessionsGet(ctx, plaid.Request{UserToken: "user-sandbox-example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range resp.GetSessions() {
		fmt.Println(s.GetLinkSessionId(), s.GetSessionStartTime().AsTime().Format(time.RFC3339))
	}
	// Output:
	// 356dbb28-7f98-44d1-8e6d-0cec580f3171 2022-09-30T23:40:30Z
	// f742cae8-31e4-49cc-a621-6cafbdb26fb9 2022-09-26T23:40:30Z
}

// Branch on Plaid's error_type and error_code, as Plaid asks, and tell them apart from an
// upstream that is not speaking Plaid's protocol at all.
func ExampleError() {
	emu, err := emulator.Start("127.0.0.1:0", emulator.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer emu.Close()
	client, err := plaid.NewClient(plaid.Config{
		BaseURL:     emu.URL,
		Credentials: plaid.Credentials{ClientID: emu.Emulator.ClientID(), Secret: emu.Emulator.Secret()},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	_, err = client.CreditSessionsGet(context.Background(), plaid.Request{UserToken: "user-nobody-knows"})
	var plaidErr *plaid.Error
	var protocolErr *plaid.ProtocolError
	switch {
	case errors.As(err, &plaidErr) && plaidErr.ErrorCode == "INVALID_USER_TOKEN":
		fmt.Println("unknown user:", plaidErr.HTTPStatus, plaidErr.ErrorType, plaidErr.ErrorCode)
	case errors.As(err, &plaidErr):
		fmt.Println("Plaid said no:", plaidErr.ErrorType, plaidErr.ErrorCode)
	case errors.As(err, &protocolErr):
		fmt.Println("the upstream is broken:", protocolErr.Reason)
	case err != nil:
		fmt.Println("no answer:", err)
	}
	// Output:
	// unknown user: 400 INVALID_INPUT INVALID_USER_TOKEN
}

func ExampleEnvironmentURL() {
	base, err := plaid.EnvironmentURL("sandbox")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(base)
	_, err = plaid.EnvironmentURL("development")
	fmt.Println(err)
	// Output:
	// https://sandbox.plaid.com
	// plaid: unknown environment "development" (want sandbox or production)
}
