package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// maxLine bounds a record's line: far above any record the service writes (a few
// hundred bytes), low enough that a file of garbage cannot make Verify hold it whole.
const maxLine = 64 << 10

// Break is where a chain does not hold.
type Break struct {
	Line   int    // 1-based
	Reason string // what is wrong, in words
}

func (b Break) Error() string { return fmt.Sprintf("line %d: %s", b.Line, b.Reason) }

// Result is what Verify found in one file.
type Result struct {
	// Records is the number of lines read.
	Records int
	// First is the Prev of the file's first record: GenesisPrev for a new chain,
	// else the hash of the last record of the file written before.
	First string
	// Last is the hash of the file's last record: the next file's first Prev.
	Last string
	// Breaks are the places the chain does not hold; none for an intact file.
	Breaks []Break
}

// Verify reads a file of records and checks that each is a record of a schema version
// it knows, and carries the hash of the line before it. prev is the hash the first
// record must carry ("" to accept whatever it carries: the file's predecessor is not at
// hand). A record edited, removed or moved breaks the chain at the next record; only
// the file's last record has no successor in it to be checked by (the next file's first
// record is: verify the files in order).
func Verify(r io.Reader, prev string) (Result, error) {
	var res Result
	br := bufio.NewReaderSize(r, 64<<10)
	for line := 1; ; line++ {
		data, err := readLine(br)
		if errors.Is(err, io.EOF) {
			return res, nil
		}
		if errors.Is(err, errLongLine) {
			res.Breaks = append(res.Breaks, Break{line, fmt.Sprintf("longer than %d bytes: not a record", maxLine)})
			res.Records++
			prev = "" // nothing to link the next one to
			continue
		}
		if err != nil {
			return res, err
		}
		res.Records++
		sum := sha256.Sum256(data)
		hash := hex.EncodeToString(sum[:])
		got, perr := parseRecord(data)
		switch {
		case perr != nil:
			res.Breaks = append(res.Breaks, Break{line, perr.Error()})
		case line == 1:
			res.First = got
			if prev != "" && got != prev {
				res.Breaks = append(res.Breaks, Break{line, "prev does not match the last record of the file before"})
			}
		case prev != "" && got != prev:
			res.Breaks = append(res.Breaks, Break{line, fmt.Sprintf("prev does not match line %d: a record was edited, removed or moved before here", line-1)})
		}
		prev, res.Last = hash, hash
	}
}

var errLongLine = errors.New("line too long")

// readLine reads one line without its newline; a last line without one counts too.
// A line past maxLine is skipped whole, and reported.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > maxLine+1 {
			line = nil
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, errLongLine
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

// parseRecord checks one line is a record and returns its prev.
func parseRecord(data []byte) (string, error) {
	var r struct {
		V    *int    `json:"v"`
		Prev *string `json:"prev"`
	}
	d := json.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(&r); err != nil {
		return "", errors.New("not a JSON record")
	}
	if d.More() {
		return "", errors.New("more than one JSON value")
	}
	switch {
	case r.V == nil:
		return "", errors.New(`no schema version "v"`)
	case *r.V != SchemaVersion:
		return "", fmt.Errorf("schema version %d: this verifier knows %d", *r.V, SchemaVersion)
	case r.Prev == nil:
		return "", errors.New(`no "prev"`)
	}
	if b, err := hex.DecodeString(*r.Prev); err != nil || len(b) != sha256.Size {
		return "", errors.New(`"prev" is not a hex SHA-256`)
	}
	return *r.Prev, nil
}
