package plaidjson

import (
	"errors"
	"strconv"
	"strings"
)

// SyntaxError reports a body that is not well-formed JSON.
type SyntaxError struct {
	// Offset is the byte offset in the body where the problem was found.
	Offset int64
	msg    string
}

func (e *SyntaxError) Error() string {
	return "invalid JSON at offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.msg
}

// FieldError reports a member whose value does not fit the schema, such as a count that
// is a string or a timestamp that is not RFC 3339.
type FieldError struct {
	// Path locates the member, as in `sessions[3].results.document_income_results`.
	Path string
	// Err says what is wrong with the value.
	Err error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// UnknownFieldsError reports members of a request that the schema does not have. Plaid
// rejects such requests, and so does UnmarshalRequest.
type UnknownFieldsError struct {
	// Fields are the unknown members' names, in the order they appeared.
	Fields []string
}

func (e *UnknownFieldsError) Error() string {
	return "unknown fields: " + strings.Join(e.Fields, ", ")
}

func errValue(msg string) error { return errors.New(msg) }

// inField prefixes the path of a FieldError (or starts one) with name, as an error
// unwinds out of a member. Syntax errors pass through unchanged.
func inField(name string, err error) error {
	if err == nil {
		return nil
	}
	var se *SyntaxError
	if errors.As(err, &se) {
		return err
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		sep := "."
		if strings.HasPrefix(fe.Path, "[") {
			sep = ""
		}
		fe.Path = name + sep + fe.Path
		return fe
	}
	return &FieldError{Path: name, Err: err}
}

// inElem is inField for the i-th element of an array.
func inElem(i int, err error) error {
	if err == nil {
		return nil // before building the index's text: this runs for every element
	}
	return inField("["+strconv.Itoa(i)+"]", err)
}
