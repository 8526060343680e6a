package transport

import (
	"bytes"
	"errors"
	"testing"
)

// The Features frame and the Welcome that asks for it are pinned: a
// primary and a secondary of other versions read them.
func TestGoldenFeatures(t *testing.T) {
	want := readGolden(t, "testdata/features.hex")
	if got := EncodeFeatures(PrimaryReadsInconsistent); !bytes.Equal(got, want) {
		t.Fatalf("the Features encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	got, err := DecodeFeatures(mustOpen(t, want, TypeFeatures))
	if err != nil || got != PrimaryReadsInconsistent {
		t.Fatalf("DecodeFeatures(golden) = %#x, %v; want %#x", got, err, PrimaryReadsInconsistent)
	}

	want = readGolden(t, "testdata/features-indexed-acks.hex")
	reads := PrimaryReadsInconsistent | PrimaryReadsIndexedAcks
	if got := EncodeFeatures(reads); !bytes.Equal(got, want) {
		t.Fatalf("the Features encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	if got, err := DecodeFeatures(mustOpen(t, want, TypeFeatures)); err != nil || got != reads {
		t.Fatalf("DecodeFeatures(golden) = %#x, %v; want %#x", got, err, reads)
	}

	want = readGolden(t, "testdata/features-waited.hex")
	reads |= PrimaryReadsWaited
	if got := EncodeFeatures(reads); !bytes.Equal(got, want) {
		t.Fatalf("the Features encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	if got, err := DecodeFeatures(mustOpen(t, want, TypeFeatures)); err != nil || got != reads {
		t.Fatalf("DecodeFeatures(golden) = %#x, %v; want %#x", got, err, reads)
	}

	want = readGolden(t, "testdata/welcome-asks-primary.hex")
	p := goldenPosition()
	p.Features = FeatureBundles | FeatureAsksPrimary
	if got := EncodePosition(TypeWelcome, p); !bytes.Equal(got, want) {
		t.Fatalf("the Welcome encoding no longer matches: the wire format changed\n got %x\nwant %x", got, want)
	}
	w, err := DecodePosition(mustOpen(t, want, TypeWelcome))
	if err != nil || w.Features != p.Features {
		t.Fatalf("DecodePosition(golden) = %+v, %v", w, err)
	}
}

func TestDecodeFeaturesRejectsMalformed(t *testing.T) {
	for name, body := range map[string][]byte{
		"empty":    nil,
		"short":    {0, 0, 0, 1},
		"trailing": {0, 0, 0, 0, 0, 0, 0, 1, 0},
	} {
		t.Run(name, func(t *testing.T) {
			if f, err := DecodeFeatures(body); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decoded %#x, err %v; want ErrCorrupt", f, err)
			}
		})
	}
}
