// Command auditverify checks creditsessionsd's audit trail (-audit-log): that every line
// is a record and carries the SHA-256 of the line before it. Given several files (a
// rotated file and those after it, oldest first), it checks that each file's first
// record links to the previous file's last. It prints where a chain breaks and exits 1;
// 0 means every file holds.
//
//	auditverify [-prev HASH] FILE...
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/creditsessions/creditsessions/internal/audit"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "auditverify:", err)
		os.Exit(1)
	}
}

var errBroken = errors.New("the chain does not hold")

func run(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("auditverify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	prev := fs.String("prev", "", "hex SHA-256 the first file's first record must link to (the last record of the file before it); empty: not checked")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: auditverify [-prev HASH] FILE...  (several files: oldest first)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("no file to verify")
	}
	broken := false
	link := *prev
	for _, name := range fs.Args() {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		res, err := audit.Verify(f, link)
		_ = f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, b := range res.Breaks {
			fmt.Fprintf(stdout, "%s:%d: %s\n", name, b.Line, b.Reason)
		}
		if len(res.Breaks) > 0 {
			broken = true
		} else {
			fmt.Fprintf(stdout, "%s: %d records, chain intact (first prev %s, last %s)\n", name, res.Records, res.First, res.Last)
		}
		link = res.Last
	}
	if broken {
		return errBroken
	}
	return nil
}
