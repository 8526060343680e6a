// Package config describes a Duplex session: one TOML file names the session,
// both sites, the primary's subsystems and volumes, and the secondary's copies
// of those volumes. The same file can be handed to both sites; each reads its
// own part:
//
//   - duplex primary reads the top-level keys and [primary]: the NBD listen
//     address, the control address, where the secondary listens, the sidefile
//     limit, the suspend timeout, the TLS client settings, and
//     [[primary.subsystem]] with its [[primary.subsystem.volume]] entries
//     (name, path of a block device or image file, size).
//   - duplex secondary and duplex recover read the top-level keys and
//     [secondary]: the link listen address, the control address, the optional
//     read-only NBD address, the journal, the TLS server settings, and
//     [[secondary.volume]] (name, image path; the size is the primary's).
//   - duplex status and duplex pair read the control addresses of both sites
//     and control_token_file.
//
// A file may describe one site only; [Config.Validate] checks the sections
// that are present, and when both are, that the secondary copies exactly the
// primary's volumes.
//
// The format (the example of the design contract):
//
//	session  = "payroll"
//	interval = "20ms"                 # time-interval group length, 1ms..10s
//	control_token_file = "token"      # mutating control calls need this token
//
//	[primary]
//	nbd      = "127.0.0.1:10809"      # NBD listen address; export name = volume name
//	control  = "127.0.0.1:7401"
//	secondary = "127.0.0.1:7402"      # where the secondary listens
//	sidefile_limit = "256MiB"         # default 256MiB (less with over 7 subsystems: 1984MiB together at most), at least 1MiB
//	suspend_after  = "60s"            # default 60s
//	pacing_start   = 50               # percent of the sidefile where write pacing begins; default 50
//	pacing_max_delay = "20ms"         # delay per write when the sidefile is full; "0s" turns pacing off
//	copy_rate_limit = "50MiB"         # bytes per second for initial copies and resyncs; absent or 0: unlimited
//	link_rate_limit = "100MiB"        # bytes per second for everything on the link; absent or 0: unlimited
//	compression = "zstd"              # record sets on the link: "zstd" or "none" (the default)
//	compression_level = 3             # zstd level, 1 (fastest) to 22 (smallest); default 3
//	# tls_cert, tls_key, tls_ca = "..."  (all three or none), tls_server_name: the link's mutual TLS
//	# nbd_tls_cert, nbd_tls_key, nbd_tls_ca = "..."  (all three or none): NBD over TLS, client certificates required
//	# control_tls_cert, control_tls_key = "..." (both or neither): the control address over HTTPS only;
//	#   control_tls_ca, control_tls_server_name: what the command-line clients check its certificate against
//	# insecure = true: accept a plaintext link, NBD or control off loopback
//
//	  [[primary.subsystem]]
//	  id = "ss1"
//	    [[primary.subsystem.volume]]
//	    name = "db-data"
//	    path = "primary/db-data.img"   # an image file, or a block device such as "/dev/vg0/db-data"
//	    size = "1GiB"                  # optional for a block device or an existing image
//
//	[secondary]
//	listen  = "127.0.0.1:7402"
//	control = "127.0.0.1:7403"
//	nbd     = "127.0.0.1:10810"       # optional: consistent read-only exports of the copy
//	journal = "secondary/journal"
//	# tls_cert, tls_key, tls_ca; nbd_tls_*; control_tls_*; insecure: as in [primary]
//	  [[secondary.volume]]
//	  name = "db-data"
//	  path = "secondary/db-data.img"
//
// Decoding is strict: a key this package does not know (keys are matched
// exactly, case included) is an error that names it, so a misspelt setting
// never silently falls back to its default. Problems are reported together
// where they can be, each prefixed with the path of its field, indexes
// counting from 0:
//
//	primary.subsystem[1].volume[0].size: must be positive, e.g. size = "1GiB"
//
// Session, subsystem and volume names are letters, digits, '.', '_' and '-',
// starting with a letter or digit; at most 64 characters (128 for volumes,
// whose names are also their NBD export names and are unique in the session).
// Volume sizes are positive multiples of 512 bytes. A volume may leave its
// size out (Size 0): its size is then that of its block device or existing
// image file, and a missing image file is not created (package volume). The
// secondary's copy takes the primary volume's size from the config; where
// that is left out, from its own device or existing image, and the link's
// handshake refuses a primary of another size. No two volumes, nor a
// volume and the journal, share a path; across the two sites this is only
// checked when both run on one machine (the link is on loopback).
//
// Relative paths (volume images, the journal, TLS files, the token file) are
// relative to the directory of the config file. [Load] and [Parse] resolve
// them against that directory (Config.Dir, made absolute), so every path in a
// loaded Config can be used as is; [Config.Encode] writes paths inside Dir
// relative to it again.
//
// Sizes are whole numbers of bytes with an optional unit: KiB, MiB, GiB, TiB
// (powers of 1024) or KB, MB, GB, TB (powers of 1000); "1.5GiB" is refused,
// write "1536MiB". Durations use Go's syntax: "20ms", "60s", "2m".
//
// Nothing a site serves or dials leaves the machine unprotected unless the
// config says so (insecure = true in the site's section): see
// [Config.CheckSecurity], which the sites run at start.
package config
