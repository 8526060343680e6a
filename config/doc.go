// Package config describes a Duplex session: one TOML file names the session,
// both sites, the primary's subsystems and volumes, and the secondary's copies
// of those volumes. The same file can be handed to both sites; each reads its
// own part: duplex primary the top-level keys and [primary] with its
// [[primary.subsystem]] and [[primary.subsystem.volume]] entries; duplex
// secondary, recover and promote the top-level keys and [secondary] with its
// [[secondary.volume]] entries; duplex status and pair the control addresses
// and control_token_file. A file may describe one site only; [Config.Validate]
// checks the sections that are present, and when both are, that the
// secondary copies exactly the primary's volumes.
//
// Each key is described once, by the tags of its field in [Config] (see
// schema.go): its name, kind, default, range, whether it is required, the
// keys it must be unique among or set together with, and the comment
// [Config.Encode] writes beside it. examples/session.toml is the format
// annotated, and examples/secure.toml a session whose sites protect all
// they serve and dial:
//
//	session = "payroll"
//	[primary]
//	nbd       = "127.0.0.1:10809"     # NBD listen address; export name = volume name
//	secondary = "127.0.0.1:7402"      # where the secondary listens
//	  [[primary.subsystem]]
//	  id = "ss1"
//	    [[primary.subsystem.volume]]
//	    name = "db-data"
//	    path = "/dev/vg0/db-data"     # a block device, or an image file
//	[secondary]
//	listen  = "127.0.0.1:7402"
//	journal = "secondary/journal"
//	  [[secondary.volume]]
//	  name = "db-data"
//	  path = "secondary/db-data.img"
//
// Decoding is strict: a key this package does not know (keys are matched
// exactly, case included) is an error that names it, with the key probably
// meant, so a misspelt setting never silently falls back to its default.
// Problems are reported together, each prefixed with the path of its field,
// indexes counting from 0:
//
//	primary.subsystem[1].volume[0].size: must be positive, e.g. size = "1GiB"
//
// Volume sizes are positive multiples of 512 bytes. A volume may leave its
// size out: its size is then that of its block device or existing image
// file, and a missing image file is not created (package volume). The
// secondary's copy takes the primary volume's size; where that is left out,
// from its own device or existing image, and the link's handshake refuses a
// primary of another size. No two volumes, nor a volume and the journal,
// share a path, nor two listeners a port; across the two sites this is only
// checked when both run on one machine (the link is on loopback).
//
// Relative paths (volume images, the journal, TLS files, the token file)
// are relative to the directory of the config file: [Load] and [Parse]
// resolve them against it (Config.Dir, made absolute), so every path in a
// loaded Config can be used as is; [Config.Encode] writes paths inside Dir
// relative to it again. Sizes and durations are written as [Size] and
// [Duration] say.
//
// Nothing a site serves or dials leaves the machine unprotected unless the
// config says so (insecure = true in the site's section): see
// [Config.CheckSecurity], which the sites run at start.
package config
