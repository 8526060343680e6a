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
// annotated, examples/secure.toml a session whose sites protect all they
// serve and dial, and demo.toml the session duplex demo runs.
//
// Decoding is strict: a key this package does not know (keys are matched
// exactly, case included) is an error that names it, with the key probably
// meant, so a misspelt setting never silently falls back to its default.
// Problems are reported together, each prefixed with the path of its field,
// indexes counting from 0:
//
//	primary.subsystem[1].volume[0].size: must be positive, e.g. size = "1GiB"
//
// A volume that leaves its size out takes its block device's or existing
// image's (package volume); the secondary's copy takes the primary
// volume's, and the link's handshake refuses a primary of another size.
// Uniqueness across the two sites (paths, listeners) is only checked when
// both run on one machine (the link is on loopback).
//
// Relative paths are relative to the directory of the config file (see
// [Config.Resolve]): every path in a loaded Config can be used as is.
//
// Nothing a site serves or dials leaves the machine unprotected unless the
// config says so (insecure = true in the site's section): see
// [Config.CheckSecurity], which the sites run at start.
package config
