// Command plaid-emulator serves a stand-in for Plaid's POST /credit/sessions/get on a
// local address, so the service and its clients can run with no network and no Plaid
// account. See package internal/emulator for the fixture users and error tokens.
//
// Usage:
//
//	plaid-emulator [-addr localhost:8090]
//
// The accepted credentials come from the environment, never from flags, so they stay out
// of process listings: PLAID_EMULATOR_CLIENT_ID and PLAID_EMULATOR_SECRET, defaulting to
// the emulator's public defaults. The process stops cleanly on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"creditsessions/internal/emulator"
)

func main() {
	if err := run(context.Background()); err != nil {
		slog.Error("plaid-emulator failed", "error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	flags := flag.NewFlagSet("plaid-emulator", flag.ContinueOnError)
	addr := flags.String("addr", "localhost:8090", "address to listen on, host:port")
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", flags.Args())
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := emulator.Config{
		ClientID: os.Getenv("PLAID_EMULATOR_CLIENT_ID"),
		Secret:   os.Getenv("PLAID_EMULATOR_SECRET"),
		Logger:   logger,
	}
	custom := cfg.ClientID != "" || cfg.Secret != ""

	srv, err := emulator.Start(*addr, cfg)
	if err != nil {
		return err
	}
	logger.Info("plaid emulator listening", "url", srv.URL, "endpoint", "POST /credit/sessions/get",
		"custom_credentials", custom)
	for _, f := range emulator.Fixtures() {
		logger.Info("fixture user", "user_token", f.Token, "holds", f.Description)
	}
	logger.Info("error users", "user_token", emulator.ErrorToken("ERROR_TYPE", "ERROR_CODE"),
		"example", emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "RATE_LIMIT"))
	logger.Info("try it", "curl", exampleCurl(srv.URL, cfg))

	<-ctx.Done()
	logger.Info("plaid emulator shutting down")
	return srv.Close()
}

// exampleCurl is a command line that asks the emulator for the example user. Custom
// credentials appear as the environment variables that hold them, never as their values.
func exampleCurl(url string, cfg emulator.Config) string {
	clientID, secret := "'PLAID-CLIENT-ID: "+emulator.DefaultClientID+"'", "'PLAID-SECRET: "+emulator.DefaultSecret+"'"
	if cfg.ClientID != "" {
		clientID = `"PLAID-CLIENT-ID: $PLAID_EMULATOR_CLIENT_ID"`
	}
	if cfg.Secret != "" {
		secret = `"PLAID-SECRET: $PLAID_EMULATOR_SECRET"`
	}
	return "curl -sS -X POST " + url + "/credit/sessions/get" +
		" -H 'Content-Type: application/json' -H " + clientID + " -H " + secret +
		` -d '{"user_token":"user-sandbox-example"}'`
}
