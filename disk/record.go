package disk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// ErrDamaged is wrapped by the error of a reader of one of the method's own
// records (a state file, an identity, a lease, a marker) whose content is
// not one its writer makes: cut short, overwritten, bytes of something
// else, a JSON value of another shape. Each is written whole by
// WriteFileAtomic, so a crash never leaves one half written: the damage is
// the disk's, or someone else's, and no later read finds another content.
// Nor is it taken as missing: a missing record starts anew (a new session's
// state, a first lease), which would forget what the damaged one guards.
var ErrDamaged = errors.New("damaged")

// Damaged is the error of a reader of the record at path, what it is
// (e.g. "secondary state file"), whose content is not one its writer
// makes, for why. The caller adds what the record holds and what to do.
func Damaged(what, path string, why error) error {
	return fmt.Errorf("%s %s is %w (%v)", what, path, ErrDamaged, why)
}

// DecodeRecord decodes the JSON object b into v, a pointer to a struct,
// and checks that b names each key of required: keys its writer always
// writes (no omitempty), so that null, {} or an object of something else,
// which json.Unmarshal would take as the zero record, are refused. Its
// error says what is wrong, for Damaged.
func DecodeRecord(b []byte, v any, required ...string) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("empty")
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return err
	}
	if keys == nil {
		return errors.New("null, not a record")
	}
	for _, k := range required {
		if _, ok := keys[k]; !ok {
			return fmt.Errorf("no %q in it", k)
		}
	}
	return json.Unmarshal(b, v)
}

// DecodeRecords is DecodeRecord for a JSON array of records into v, a
// pointer to a slice, each record an object naming each key of required.
func DecodeRecords(b []byte, v any, required ...string) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("empty")
	}
	var list []map[string]json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	if list == nil {
		return errors.New("null, not a list of records")
	}
	for i, keys := range list {
		if keys == nil {
			return fmt.Errorf("record %d is null", i)
		}
		for _, k := range required {
			if _, ok := keys[k]; !ok {
				return fmt.Errorf("no %q in record %d", k, i)
			}
		}
	}
	return json.Unmarshal(b, v)
}
