package disk

import (
	"encoding/json"
	"errors"
	"testing"
)

type testRecord struct {
	Session string `json:"session"`
	Group   uint64 `json:"group"`
	Note    string `json:"note,omitempty"`
}

func TestDecodeRecordRefusesWhatItsWriterNeverWrites(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"session":"s","group":3}`, true},
		{`{"session":"s","group":3,"note":"n","later":1}`, true},
		{`{"session":"s","group":3`, false},
		{`{"session":"s"}`, false},
		{`{}`, false},
		{`null`, false},
		{``, false},
		{"\n ", false},
		{"\x00\x00\x00", false},
		{`[{"session":"s","group":3}]`, false},
		{`"s"`, false},
		{`{"session":7,"group":3}`, false},
		{`{"session":"s","group":"3"}`, false},
	} {
		var r testRecord
		err := DecodeRecord([]byte(tc.in), &r, "session", "group")
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestDecodeRecordsRefusesWhatItsWriterNeverWrites(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`[]`, true},
		{`[{"session":"s","group":3},{"session":"t","group":4}]`, true},
		{`[{"session":"s","group":3},null]`, false},
		{`[{"session":"s"}]`, false},
		{`null`, false},
		{`{}`, false},
		{``, false},
		{`[{"session":"s","group":3}`, false},
	} {
		var r []testRecord
		err := DecodeRecords([]byte(tc.in), &r, "session", "group")
		if (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok %v", tc.in, err, tc.ok)
		}
	}
}

func TestDamagedNamesTheFileAndWraps(t *testing.T) {
	err := Damaged("state file", "/d/state.json", errors.New("null, not a record"))
	if !errors.Is(err, ErrDamaged) || err.Error() != "state file /d/state.json is damaged (null, not a record)" {
		t.Errorf("Damaged: %v", err)
	}
}

// FuzzDecodeRecord: any content decodes or is refused, never panics, and
// a record taken names every required key.
func FuzzDecodeRecord(f *testing.F) {
	for _, s := range []string{`{"session":"s","group":3}`, `{}`, `null`, `[]`, `{"session":1}`, "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r testRecord
		if DecodeRecord(b, &r, "session", "group") != nil {
			return
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(b, &keys); err != nil || keys["session"] == nil || keys["group"] == nil {
			t.Fatalf("%q taken as a record: %v %v", b, keys, err)
		}
		var list []testRecord
		_ = DecodeRecords(b, &list, "session")
	})
}
