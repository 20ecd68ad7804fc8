-- prosody test config (rendered by lab/servers.py: the at-sign placeholders are filled in).
-- Loopback only, temporary directories, throwaway certificate; nothing in /etc or /var/lib.

run_as_root = true -- CI runs as root; Debian's prosody refuses root unless told
pidfile = @PIDFILE@
data_path = @DATA@
certificates = @CERTS@
log = { { levels = { min = "info" }, to = "file", filename = @LOG@ } }

interfaces = { @HOST@ }
c2s_ports = { @PORT@ }
c2s_direct_tls_ports = { @TLS_PORT@ } -- XEP-0368
s2s_ports = {}
http_ports = {}
https_ports = {}
modules_disabled = { "s2s" }

modules_enabled = {
	"roster";
	"saslauth";
	"tls";
	"disco";
	"carbons"; -- XEP-0280
	"pep"; -- XEP-0163, XEP-0490 pointers live here
	"private";
	"blocklist";
	"ping"; -- XEP-0199
	"smacks"; -- XEP-0198
	"mam"; -- XEP-0313
	-- "offline" is loaded automatically; no cap on its size.
}

c2s_require_encryption = true
allow_registration = false
authentication = "internal_hashed" -- SCRAM-SHA-1 (and PLAIN inside TLS)

-- Accounts, rosters, PEP in files; the message archive in SQLite (fast paging at 10,000).
default_storage = "internal"
storage = { archive = "sql" }
sql = { driver = "SQLite3", database = "prosody.sqlite" }

default_archive_policy = true -- archive everything
archive_expires_after = "never"
max_archive_query_results = 250 -- as the lab deploys (salt/prosody); prosody's default is 50

ssl = { certificate = @CERT@; key = @KEY@ }

-- Extra global options from start_prosody(extra_config=...), e.g. benchmarks:
@EXTRA@

VirtualHost @DOMAIN@
	ssl = { certificate = @CERT@; key = @KEY@ }
