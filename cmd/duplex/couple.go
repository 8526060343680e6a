package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"duplex/control"
	"duplex/coupling"
)

var coupleSynopsis = synopsis{"couple", "add|remove|list --config FILE [SESSION]"}

// runCouple changes or lists the members of the coupled group the config's
// [coupling] names. Membership is what holds the master time: a member is
// never dropped for being silent, only by duplex couple remove.
func runCouple(ctx context.Context, args []string, stdout io.Writer) error {
	fs := newFlags(coupleSynopsis, "Adds a session to the coupled group of the config's [coupling], removes one, or lists "+
		"the members with the time each published and the group's master time. SESSION defaults to the config's session. "+
		"An added session's writes are coupled with the group's from its add on: it starts at the least time of the members "+
		"that have one, which they may have applied through (none: at its own). "+
		"Run again after it was cut short (killed before it said the session is a member), it finishes the add at those times as of its first run; "+
		"once etcd compacted them away, the session's secondary finishes it when it journaled past the others' times, and the add refuses until then. "+
		"The master time is the minimum over the members: a member that stops publishing holds it until it is removed.")
	path := fs.configFlag("its [coupling] section")
	pos, err := fs.parse(args, stdout)
	if err != nil {
		return err
	}
	if *path == "" {
		return fs.usageErrorf("--config FILE is required")
	}
	if len(pos) < 1 {
		return fs.usageErrorf("want add, remove or list, and at most one SESSION")
	}
	if len(pos) > 2 {
		return fs.usageErrorf("unexpected argument %q: one SESSION at most", pos[2])
	}
	op := pos[0]
	if op != "add" && op != "remove" && op != "list" {
		return fs.usageErrorf("unknown operation %q: want add, remove or list", op)
	}
	cfg, err := fs.loadConfig(*path)
	if err != nil {
		return err
	}
	if !cfg.Coupled() {
		return fs.configLacks(*path, "has no [coupling] section: name the group and its etcd there first")
	}
	member := cfg.Session
	if len(pos) == 2 {
		member = pos[1]
	}
	store, err := coupling.DialConfig(cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	switch op {
	case "add":
		var st coupling.Store = store
		if file := os.Getenv(AddStopFileEnv); file != "" {
			st = stopAfterMember{Store: store, file: file}
		}
		if err := coupling.Add(cctx, st, member, time.Now()); err != nil {
			return fmt.Errorf("couple add %s: %w", member, err)
		}
		fmt.Fprintf(stdout, "session %s is a member of coupled group %s\n", member, cfg.Coupling.Group)
		return nil
	case "remove":
		if err := store.RemoveMember(cctx, member); err != nil {
			return fmt.Errorf("couple remove %s: %w", member, err)
		}
		fmt.Fprintf(stdout, "session %s is no longer a member of coupled group %s: the master time no longer waits for it\n", member, cfg.Coupling.Group)
		return nil
	}
	view, err := store.Read(cctx)
	if err != nil {
		return fmt.Errorf("couple list: %w", err)
	}
	printGroup(stdout, cfg.Coupling.Group, view)
	return nil
}

// AddStopFileEnv names a file that duplex couple add, for tests, creates
// once it made the membership, and then waits to be killed, before it
// publishes the member's floor: the moment a kill -9 leaves an add cut
// short.
const AddStopFileEnv = "DUPLEX_COUPLE_ADD_STOP_FILE"

// stopAfterMember is a Store whose AddMemberView never returns once it
// made the membership and said so in file.
type stopAfterMember struct {
	coupling.Store
	file string
}

func (s stopAfterMember) AddMemberView(ctx context.Context, member string) (coupling.View, error) {
	v, err := s.Store.AddMemberView(ctx, member)
	if err != nil {
		return v, err
	}
	if err := os.WriteFile(s.file, []byte(member+"\n"), 0o644); err != nil {
		return v, err
	}
	for {
		time.Sleep(time.Hour)
	}
}

// printGroup lists a group's members, their times and the master time.
func printGroup(w io.Writer, group string, view coupling.View) {
	fmt.Fprintf(w, "coupled group %s: %d members\n", group, len(view.Members))
	var master int64
	complete := len(view.Members) > 0
	for _, m := range view.Members {
		r, ok := view.Reports[m]
		state := "alive"
		if !view.Alive[m] {
			state = "silent (lease expired)"
		}
		// Its add ended before it published the member's floor (killed),
		// or is under way.
		unfinished := ""
		if !view.Given(m) {
			unfinished = fmt.Sprintf("; its add has not given it its floor: duplex couple add %s finishes it or says what it waits for", m)
		}
		if !ok || r.Time == 0 {
			fmt.Fprintf(w, "  %s: no time published yet%s\n", m, unfinished)
			complete = false
			continue
		}
		fmt.Fprintf(w, "  %s: time %s, published at %s, %s%s\n", m, control.FormatTime(r.Time), control.FormatTime(r.At), state, unfinished)
		if master == 0 || r.Time < master {
			master = r.Time
		}
	}
	if complete {
		fmt.Fprintf(w, "master consistency time %s\n", control.FormatTime(master))
	} else {
		fmt.Fprintln(w, "master consistency time unknown: a member has published no time")
	}
	if view.Recovery != 0 {
		fmt.Fprintf(w, "recovery time (fixed by duplex recover --coupled) %s\n", control.FormatTime(view.Recovery))
	}
}
