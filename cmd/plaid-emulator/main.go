// Command plaid-emulator serves a stand-in for Plaid's POST /credit/sessions/get on a
// local address, so the service and its clients can run with no network and no Plaid
// account. See package internal/emulator for the fixture users and error tokens.
//
// Usage:
//
//	plaid-emulator [-addr localhost:8090] [-faults SPEC] [-seed N]
//
// -faults makes the emulator misbehave at random, to exercise a client's retries,
// deadlines and circuit breakers, for example
//
//	-faults error=0.2,ratelimit=0.05,reset=0.01,stall=0.01,garbage=0.01,latency=20ms,retry-after=1s
//
// (see emulator.ParseFaults for the syntax), and -seed makes the random choices
// repeatable. A running emulator's faults can also be changed over HTTP: PUT, GET and
// DELETE /emulator/faults, and GET /emulator/stats for the call count.
//
// It also serves Plaid's POST /webhook_verification_key/get and, to send signed
// webhooks to a URL of your choosing, POST /sandbox/income/fire_webhook with a
// user_token and a webhook URL (see package internal/emulator); POST /emulator/user
// {"user_token"} answers the user_id those webhooks name, which a watch needs.
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

	"github.com/creditsessions/creditsessions/internal/emulator"
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
	faultSpec := flags.String("faults", "", "random faults, such as error=0.2,ratelimit=0.05,reset=0.01,latency=20ms,retry-after=1s; \"\" for none")
	seed := flags.Uint64("seed", 0, "seed for the random faults, to repeat a run; 0 picks one")
	if err := flags.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %q", flags.Args())
	}
	faults, err := emulator.ParseFaults(*faultSpec)
	if err != nil {
		return fmt.Errorf("-faults: %w", err)
	}

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := emulator.Config{
		ClientID: os.Getenv("PLAID_EMULATOR_CLIENT_ID"),
		Secret:   os.Getenv("PLAID_EMULATOR_SECRET"),
		Logger:   logger,
		Seed:     *seed,
	}
	custom := cfg.ClientID != "" || cfg.Secret != ""

	srv, err := emulator.Start(*addr, cfg)
	if err != nil {
		return err
	}
	srv.Emulator.SetFaults(faults) // valid: ParseFaults checked it
	logger.Info("plaid emulator listening", "url", srv.URL, "endpoint", "POST /credit/sessions/get",
		"custom_credentials", custom)
	for _, f := range emulator.Fixtures() {
		logger.Info("fixture user", "user_token", f.Token, "holds", f.Description)
	}
	logger.Info("error users", "user_token", emulator.ErrorToken("ERROR_TYPE", "ERROR_CODE"),
		"example", emulator.ErrorToken("RATE_LIMIT_EXCEEDED", "RATE_LIMIT"))
	logger.Info("try it", "curl", exampleCurl(srv.URL, cfg))
	logger.Info("webhooks", "signing_kid", srv.Emulator.WebhookKeyID(),
		"keys", "POST "+srv.URL+"/webhook_verification_key/get",
		"fire", "POST "+srv.URL+"/sandbox/income/fire_webhook {user_token, webhook[, webhook_code]}",
		"user_id", "POST "+srv.URL+"/emulator/user {user_token}")
	logger.Info("faults", "faults", faults.String(), "seed", srv.Emulator.Seed(),
		"control", srv.URL+"/emulator/faults")

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
