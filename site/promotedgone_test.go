package site

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"

	"duplex/apply"
)

// TestAGonePromotedVolumeNeverCopiedStopsItsStart: a promoted site serves
// every volume read-write, one its secondary never held a whole copy of
// as well: what its clients wrote there since the promotion is in that
// image alone. Deleted, emptied or cut short, the image refuses the start,
// as any promoted site's volume does; created again as zeros, those
// writes would be lost without a word.
func TestAGonePromotedVolumeNeverCopiedStopsItsStart(t *testing.T) {
	cfg := linkConfig(t)
	cfg.Secondary.NBD = "127.0.0.1:0"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	// No primary ever linked: the secondary holds no whole copy of any
	// volume when promoted.
	firstStart(t, cfg)
	if _, _, _, err := Promote(ctx, cfg, quiet, nil); err != nil {
		t.Fatal(err)
	}
	if st, err := apply.ReadState(StatePath(cfg)); err != nil || !st.Volumes["vol1"].NoWholeCopy {
		t.Fatalf("the promoted secondary's state of vol1: %+v, %v; want no whole copy", st.Volumes["vol1"], err)
	}
	p, err := OpenPromoted(cfg, quiet, PromotedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte{9}, 4096)
	if err := p.byVol["vol1"].Write(ctx, "vol1", data, 0); err != nil {
		t.Fatal(err)
	}
	stop := runUntil(t, func(ctx context.Context) { p.Run(ctx) })
	stop()
	path := cfg.Secondary.Volumes[0].Path
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:len(data)], data) {
		t.Fatal("the promoted site's write is not in its image")
	}
	for _, g := range gone {
		t.Run(g.name, func(t *testing.T) {
			if err := g.do(path); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(path, b, 0o600)
			p, err := OpenPromoted(cfg, quiet, PromotedOptions{})
			if err == nil {
				p.close()
				t.Fatalf("the promoted site started over the %s image %s of a volume it served", g.name, path)
			}
			if !errors.Is(err, errImageGone) {
				t.Errorf("the refusal does not wrap errImageGone: %v", err)
			}
			wantWords(t, "the refusal", err.Error(), path, "vol1", "Put the image back", "promotion.json")
		})
	}
}
