package sinks

import (
	"errors"
	"fmt"
)

// ErrInvalidDatabase is returned for a database name that is not a plain
// ClickHouse identifier.
var ErrInvalidDatabase = errors.New("invalid database name")

// errUndecodable marks a record value that is not valid JSON of its topic's
// type.
var errUndecodable = errors.New("record value cannot be decoded")

// InsertError is a failed INSERT into one table.
type InsertError struct {
	Table string
	Rows  int
	Err   error
}

func (e *InsertError) Error() string {
	return fmt.Sprintf("insert %d rows into %s: %v", e.Rows, e.Table, e.Err)
}

func (e *InsertError) Unwrap() error { return e.Err }
