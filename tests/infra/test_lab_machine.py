"""Verify one lab machine from its own pillar (pytest-testinfra).

Runs unchanged over SSH (`--hosts=ssh://…`) and inside a machine (`--hosts=local://`);
see tests/infra/README.md. Every test is marked with the pillar role it needs.
"""

from __future__ import annotations

import hmac
import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest
import testinfra.host

Sockets = list[tuple[str, int, str]]
PROBE = (Path(__file__).parent / "xmpp_probe.py").read_text()
LOOPBACK = {"127.0.0.1", "::1"}
CA_TRUST = "/usr/local/share/ca-certificates/xmpp-tool-lab-ca.crt"
# Formula defaults the pillar may override (salt/*/parameters/defaults.yaml).
PROSODY_MAM_PAGE = 250
EJABBERD_MNESIA_STORAGE = {"archive_msg": "disc_copies", "archive_prefs": "disc_copies",
                           "offline_msg": "disc_copies"}
CERT_DIR, KEY_DIR = "/etc/ssl/lab", "/etc/ssl/private"


def probe(host: testinfra.host.Host, **params: Any) -> dict[str, Any]:
    script = f"{PROBE}\nmain({json.dumps(json.dumps(params))})\n"
    out = host.run(f"python3 - <<'XMPP_PROBE_EOF'\n{script}XMPP_PROBE_EOF")
    assert out.rc == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def on_port(sockets: Sockets, port: int) -> set[str]:
    return {addr for addr, p, _ in sockets if p == port}


def domain_of(pillar: dict[str, Any], service: str) -> str:
    return str(pillar.get(service, {}).get("domain") or pillar["lab"]["domains"][service])


def ejabberd_expected_nodes(pillar: dict[str, Any]) -> set[str]:
    members = pillar["lab"].get("cluster", {}).get("ejabberd", [])
    me = pillar["_minion_id"]
    node = pillar.get("ejabberd", {}).get("node") or f"ejabberd@{me}"
    return {f"ejabberd@{m}" for m in members} if me in members else {node}


# --------------------------------------------------------------------------- all machines

@pytest.mark.role("any")
def test_lab_names_resolve_to_pillar_addresses(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    hosts = pillar["lab"]["hosts"]
    assert hosts
    for name, address in hosts.items():
        assert host.addr(name).ipv4_addresses == [address], name


@pytest.mark.role("any")
def test_own_address_is_configured(host: testinfra.host.Host, pillar: dict[str, Any]) -> None:
    address = pillar["lab"]["hosts"][pillar["_minion_id"]]
    addresses = {f.split()[3].split("/")[0]
                 for f in host.check_output("ip -o -4 addr show").splitlines()}
    assert address in addresses


# --------------------------------------------------------------------------- firewall

FIREWALL_TABLE = "lab_firewall"  # salt/firewall/parameters/defaults.yaml
FIREWALL_DEFAULT = {"ssh": {"ports": [22], "protocol": "tcp", "sources": []}}


def nft_set(items: list[Any]) -> str:
    """How `nft list` prints a match on these values (one value: no braces)."""
    return str(items[0]) if len(items) == 1 else "{ " + ", ".join(map(str, items)) + " }"


def firewall_rules(pillar: dict[str, Any]) -> set[str]:
    """The accept rules the pillar's services give (salt/firewall/files)."""
    services = {**FIREWALL_DEFAULT, **pillar.get("firewall", {}).get("services", {})}
    rules = set()
    for service in services.values():
        match = f"{service.get('protocol', 'tcp')} dport {nft_set(service['ports'])} accept"
        sources = service.get("sources") or []
        v4 = [s for s in sources if ":" not in s]
        v6 = [s for s in sources if ":" in s]
        if not sources:
            rules.add(match)
        if v4:
            rules.add(f"ip saddr {nft_set(v4)} {match}")
        if v6:
            rules.add(f"ip6 saddr {nft_set(v6)} {match}")
    return rules


@pytest.mark.role("any")
def test_firewall_drops_all_inbound_but_the_role_services(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    assert host.package("nftables").is_installed
    assert host.service("nftables").is_enabled  # the ruleset comes back at boot
    listed = host.check_output(f"nft list table inet {FIREWALL_TABLE}")
    lines = {line.strip() for line in listed.splitlines()}
    assert "type filter hook input priority filter; policy drop;" in lines
    assert {'iif "lo" accept', "ct state established,related accept"} <= lines
    accepts = {line for line in lines if "dport" in line}
    assert accepts == firewall_rules(pillar), listed
    # SSH from anywhere, whatever the role: never cut Vagrant's session.
    assert "tcp dport 22 accept" in lines
    # The only input chain that filters (no other table drops what this one accepts).
    chains = host.check_output("nft list chains")
    assert chains.count("hook input") == 1, chains


@pytest.mark.role("ejabberd")
def test_firewall_lets_clients_in_only_from_the_balancer(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    machines = pillar["lab"]["machines"]
    balancers = sorted(m["address"] for m in machines.values() if m["role"] == "haproxy")
    me = pillar["_minion_id"]
    members = pillar["lab"]["cluster"].get(machines[me].get("cluster"), [])
    peers = [pillar["lab"]["hosts"][m] for m in members if m != me]
    listed = host.check_output(f"nft list table inet {FIREWALL_TABLE}")
    assert f"ip saddr {nft_set(balancers)} tcp dport {{ 5222, 5223 }} accept" in listed
    dist_port = int(pillar.get("ejabberd", {}).get("dist_port", 4370))
    if peers:
        assert f"ip saddr {nft_set(peers)} tcp dport {dist_port} accept" in listed
    for port in (3306, 4369, 5280, 5269):
        assert f" {port} " not in listed and f"dport {port} " not in listed, port


# --------------------------------------------------------------------------- lab TLS

def check_certificate(host: testinfra.host.Host, domain: str) -> None:
    crt, key = f"{CERT_DIR}/{domain}.crt", f"{KEY_DIR}/{domain}.key"
    assert host.file(CA_TRUST).exists
    verify = host.run(f"openssl verify -CAfile {CA_TRUST} {crt}")
    assert verify.rc == 0 and verify.stdout.strip().endswith("OK"), verify.stdout + verify.stderr
    san = host.check_output(f"openssl x509 -noout -ext subjectAltName -in {crt}")
    assert f"DNS:{domain}" in san
    pub_cert = host.check_output(f"openssl x509 -noout -pubkey -in {crt}")
    pub_key = host.check_output(f"openssl pkey -pubout -in {key}")
    assert pub_cert == pub_key, "private key does not match the certificate"
    k = host.file(key)
    assert (k.user, k.group, k.mode) == ("root", "ssl-cert", 0o640)


@pytest.mark.role("prosody")
def test_prosody_certificate_chains_to_lab_ca(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    assert host.file(CA_TRUST).content_string.strip() == pillar["labtls"]["ca"]["cert"].strip()
    check_certificate(host, domain_of(pillar, "prosody"))


@pytest.mark.role("ejabberd")
def test_ejabberd_certificate_chains_to_lab_ca(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    assert host.file(CA_TRUST).content_string.strip() == pillar["labtls"]["ca"]["cert"].strip()
    check_certificate(host, domain_of(pillar, "ejabberd"))


# --------------------------------------------------------------------------- prosody

@pytest.mark.role("prosody")
def test_prosody_packages_and_services(host: testinfra.host.Host) -> None:
    for pkg in ("prosody", "lua-dbi-mysql", "mariadb-server"):
        assert host.package(pkg).is_installed, pkg
    for svc in ("prosody", "mariadb"):
        assert host.service(svc).is_running, svc
        assert host.service(svc).is_enabled, svc


@pytest.mark.role("prosody")
def test_prosody_listens_for_clients_only(listening: Sockets) -> None:
    assert on_port(listening, 5222) and on_port(listening, 5223)
    assert on_port(listening, 5281)  # HTTPS: file upload (XEP-0363)
    assert {p for _, p, proc in listening if proc.startswith("lua")} <= {5222, 5223, 5281}
    for port in (5269, 5280, 5347, 5582):  # s2s, plain http, components, telnet admin
        assert not on_port(listening, port), port


@pytest.mark.role("prosody")
def test_prosody_serves_muc_and_upload_on_its_address(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    domain, ca = domain_of(pillar, "prosody"), pillar["labtls"]["ca"]["cert"]
    address = pillar["lab"]["hosts"][pillar["_minion_id"]]
    text = host.file("/etc/prosody/prosody.cfg.lua").content_string
    assert f'Component "conference.{domain}" "muc"' in text
    assert 'restrict_room_creation = "local"' in text
    assert f'Component "upload.{domain}" "http_file_share"' in text
    assert f'http_external_url = "https://{address}:5281/"' in text
    # The upload URLs name the address: the certificate has it (clients lack lab DNS).
    res = probe(host, address=address, port=5281, mode="https", domain=address, ca=ca,
                path="/file_share/no-such-slot")  # fmt: skip
    assert res["ok"], res["error"]
    assert address in res["ips"] and f"upload.{domain}" in res["san"]
    assert res["status"] in (401, 403, 404)  # served, and no slot: nothing to get


@pytest.mark.role("prosody")
def test_mariadb_listens_on_loopback_only(listening: Sockets) -> None:
    mariadb = {addr for addr, _, proc in listening if proc.startswith(("mariadbd", "mysqld"))}
    assert mariadb, "MariaDB is not listening"
    assert mariadb <= LOOPBACK, mariadb


@pytest.mark.role("prosody")
def test_prosody_config_values(host: testinfra.host.Host, pillar: dict[str, Any]) -> None:
    cfg = host.file("/etc/prosody/prosody.cfg.lua")
    assert (cfg.user, cfg.group, cfg.mode) == ("root", "prosody", 0o640)
    text = cfg.content_string
    for needed in ("c2s_require_encryption = true", "allow_registration = false",
                   'storage = "sql"', 'driver = "MySQL";', "default_archive_policy = true",
                   "c2s_direct_tls_ports = { 5223 }",
                   f'VirtualHost "{domain_of(pillar, "prosody")}"'):
        assert needed in text, needed
    for module in ("mam", "pep", "smacks", "carbons", "offline", "ping", "disco"):
        assert f'"{module}";' in text, module
    page = int(pillar["prosody"].get("max_archive_query_results", PROSODY_MAM_PAGE))
    assert f"\nmax_archive_query_results = {page}\n" in text
    # What the running server uses (mod_admin_shell over its admin socket).
    live = host.check_output(
        """prosodyctl shell "config:get('*', 'max_archive_query_results')" 2>/dev/null""")
    assert f"OK: {page}" in live, live[-300:]
    assert '"register";' not in text
    osfinger = host.system_info.release or ""
    if osfinger.startswith("13"):
        assert '"posix";' not in text  # deprecated in prosody 13


@pytest.mark.role("prosody")
def test_prosody_keeps_the_pillar_rooms_with_members_archive_and_bookmarks(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    """As the running server has them (its admin shell): each pillar room persistent,
    members-only, hidden and archived, each member affiliated and holding a XEP-0402
    bookmark of it."""
    domain = domain_of(pillar, "prosody")
    service = pillar["prosody"].get("muc", {}).get("host") or f"conference.{domain}"
    rooms = pillar["prosody"].get("muc", {}).get("rooms", {})
    for name, room in rooms.items():
        jid = f"{name}@{service}"
        room_lua = f'prosody.hosts["{service}"].modules.muc.get_room_from_jid("{jid}")'
        checks = [f'local r = {room_lua}; assert(r, "no room"); '
                  'assert(r:get_persistent() and r:get_members_only() and r:get_hidden(), '
                  '"not persistent, members-only and hidden"); '
                  'assert(r._data.archiving == true, "not archived")']
        for user in room.get("members", []):
            pep = f'prosody.hosts["{domain}"].modules.pep.get_pep_service("{user}")'
            checks += [f'assert({room_lua}:get_affiliation("{user}@{domain}") == "member", '
                       f'"{user} is not a member")',
                       f'local ok, items = {pep}:get_items("urn:xmpp:bookmarks:1", true, "{jid}"); '
                       f'assert(ok and items and items["{jid}"], "{user} has no bookmark")']
        for lua in checks:
            out = host.run(f"prosodyctl shell {shlex.quote('>' + lua)}")
            assert out.rc == 0, f"{jid}: {lua}: {out.stdout[-300:]}"


@pytest.mark.role("prosody")
def test_prosody_database_grants_and_accounts(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    db = pillar["prosody"].get("sql", {}).get("database", "prosody")
    user = pillar["prosody"].get("sql", {}).get("username", "prosody")
    grants = host.check_output(f"mariadb -NBe \"SHOW GRANTS FOR '{user}'@'localhost'\"")
    assert f"ON `{db}`.*" in grants
    domain = domain_of(pillar, "prosody")
    accounts = set(host.check_output(
        f"mariadb -NB {db} -e \"SELECT DISTINCT user FROM prosody WHERE host='{domain}' "  # noqa: S608
        "AND store='accounts'\"").split())
    assert set(pillar["prosody"]["users"]) <= accounts


@pytest.mark.role("prosody")
def test_prosody_serves_lab_certificate(host: testinfra.host.Host, pillar: dict[str, Any]) -> None:
    domain, ca = domain_of(pillar, "prosody"), pillar["labtls"]["ca"]["cert"]
    for mode, port in (("starttls", 5222), ("direct", 5223)):
        res = probe(host, port=port, mode=mode, domain=domain, ca=ca)
        assert res["ok"], f"{mode} {port}: {res['error']}"
        assert domain in res["san"]


# --------------------------------------------------------------------------- ejabberd

@pytest.mark.role("ejabberd")
def test_ejabberd_package_and_services(host: testinfra.host.Host) -> None:
    assert host.package("ejabberd").is_installed
    assert host.service("ejabberd").is_running
    assert host.service("ejabberd").is_enabled
    assert host.service("epmd.socket").is_running
    # Drop-in: no Type=notify watchdog that kills the node after a cluster join.
    props = host.check_output("systemctl show ejabberd -p Type -p WatchdogUSec -p NotifyAccess")
    assert "Type=simple" in props and "NotifyAccess=none" in props
    assert "WatchdogUSec=0" in props or "WatchdogUSec=infinity" in props


@pytest.mark.role("ejabberd")
def test_ejabberd_node_name_and_cookie(host: testinfra.host.Host, pillar: dict[str, Any]) -> None:
    me = pillar["_minion_id"]
    node = pillar.get("ejabberd", {}).get("node") or f"ejabberd@{me}"
    assert f"ERLANG_NODE={node}\n" in host.file("/etc/default/ejabberd").content_string
    cookie = host.file("/var/lib/ejabberd/.erlang.cookie")
    assert (cookie.user, cookie.mode) == ("ejabberd", 0o400)
    same = hmac.compare_digest(cookie.content_string.strip(), pillar["ejabberd"]["cookie"])
    assert same, "cookie file differs from pillar ejabberd:cookie"  # values never printed


@pytest.mark.role("ejabberd")
def test_erlang_distribution_and_epmd_stay_off_other_networks(
    host: testinfra.host.Host, pillar: dict[str, Any], listening: Sockets
) -> None:
    cluster_address = pillar["lab"]["hosts"][pillar["_minion_id"]]
    dist_port = int(pillar.get("ejabberd", {}).get("dist_port", 4370))
    assert on_port(listening, dist_port) == {cluster_address}
    assert on_port(listening, 4369) <= LOOPBACK  # epmd
    beam = {(addr, port) for addr, port, proc in listening if proc == "beam.smp"}
    public = {(a, p) for a, p in beam if a not in LOOPBACK}
    # Only the client listeners and the distribution port beyond loopback.
    anywhere = {(a, p) for a in ("0.0.0.0", "::") for p in (5222, 5223, 5443)}  # noqa: S104
    assert public <= anywhere | {(cluster_address, dist_port)}, public
    # Admin interfaces (web admin, ReST API) on loopback only.
    assert on_port(listening, 5280) <= LOOPBACK
    assert not on_port(listening, 5269)  # no s2s


@pytest.mark.role("ejabberd")
def test_erlang_distribution_speaks_tls_with_the_lab_certificate(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    """inet_tls for the node and every VM ejabberdctl starts; peers verified both ways."""
    ej = pillar.get("ejabberd", {})
    tls = ej.get("dist_tls", {})
    assert tls.get("enabled"), "the lab runs the distribution over TLS"
    optfile = tls.get("optfile", "/etc/ejabberd/inet_tls_dist.conf")
    flags = f"-proto_dist inet_tls -ssl_dist_optfile {optfile}"
    assert flags in host.file("/etc/default/ejabberd").content_string
    pid = host.check_output("systemctl show -p MainPID --value ejabberd")
    beam = host.check_output("pgrep -u ejabberd -f 'beam.smp.*-proto_dist inet_tls' | head -1")
    assert beam, f"no beam.smp with -proto_dist inet_tls (ejabberd main PID {pid})"
    conf = host.file(optfile)
    assert (conf.user, conf.group, conf.mode) == ("root", "ejabberd", 0o640)
    text = conf.content_string
    domain = domain_of(pillar, "ejabberd")
    for needed in ("{verify, verify_peer}", "{fail_if_no_peer_cert, true}",
                   f'{{certfile, "{CERT_DIR}/{domain}.crt"}}',
                   f'{{keyfile, "{KEY_DIR}/{domain}.key"}}',
                   f'{{cacertfile, "{tls.get("cacertfile", CA_TRUST)}"}}'):
        assert needed in text, needed
    assert text.count("{verify, verify_peer}") == 2  # server and client side
    # The port itself: a TLS server whose certificate the lab CA verifies and that
    # names this machine (the host part of the node name the peers dial).
    address = pillar["lab"]["hosts"][pillar["_minion_id"]]
    dist_port = int(ej.get("dist_port", 4370))
    out = host.run(f"openssl s_client -connect {address}:{dist_port} -CAfile {CA_TRUST} "
                   f"-verify_hostname {pillar['_minion_id']} -verify_return_error </dev/null")
    assert "Verify return code: 0 (ok)" in out.stdout, out.stdout[-1500:] + out.stderr[-500:]
    # ejabberdctl (its own VM over the same TLS distribution) still answers.
    ejabberdctl(host, "status")


def ejabberdctl(host: testinfra.host.Host, *args: str, tries: int = 4) -> str:
    """``ejabberdctl ARGS``'s output. Each call boots its own Erlang VM that dials the node
    over the TLS distribution; on VMs under qemu TCG with four machines on two cores that
    dial was seen to time out once ("Failed RPC connection", exit 3) while the node was
    up, so exit 3 is tried again a few seconds later; any other failure is not."""
    cmd = "ejabberdctl " + " ".join(shlex.quote(a) for a in args)
    for attempt in range(tries):
        res = host.run(cmd)
        if res.rc != 3 or attempt == tries - 1:
            break
        time.sleep(5)
    assert res.rc == 0, f"{cmd}: rc {res.rc}: {res.stdout[-800:]} {res.stderr[-400:]}"
    return str(res.stdout)


@pytest.mark.role("ejabberd")
def test_ejabberd_config_values(host: testinfra.host.Host, pillar: dict[str, Any]) -> None:
    cfg = host.file("/etc/ejabberd/ejabberd.yml")
    assert (cfg.user, cfg.group, cfg.mode) == ("root", "ejabberd", 0o640)
    text = cfg.content_string
    assert f"  - {domain_of(pillar, 'ejabberd')}\n" in text
    proxy = bool(pillar.get("ejabberd", {}).get("proxy_protocol"))
    assert text.count(f"use_proxy_protocol: {'true' if proxy else 'false'}") == 3
    for needed in ("mod_muc:", "access_create: local", "mod_http_upload:", "access: local",
                   "/upload: mod_http_upload"):
        assert needed in text, needed
    for needed in ("mod_mam:", "default: always", "mod_offline:", "mod_pubsub:", "- pep",
                   "mod_stream_mgmt:", "mod_carboncopy:", "mod_ping:",
                   '"urn:xmpp:mds:displayed:0":'):
        assert needed in text, needed
    assert "mod_register" not in text


@pytest.mark.role("ejabberd")
def test_ejabberd_archive_and_offline_tables_have_the_pillar_storage(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    """This node's copy of each table, now (Mnesia) and at the next start (ejabberd.schema)."""
    wanted = {**EJABBERD_MNESIA_STORAGE, **pillar["ejabberd"].get("mnesia_storage", {})}
    schema = host.file("/var/lib/ejabberd/ejabberd.schema").content_string
    for table, storage in wanted.items():
        info = ejabberdctl(host, "mnesia_table_info", table)
        assert f"{{storage_type,{storage}}}" in info, f"{table}: {info[:500]}"
        assert f"\n{table}:\n  storage_type: {storage}\n" in schema, table


@pytest.mark.role("ejabberd")
def test_ejabberd_refuses_rather_than_loses(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    """The formula's cluster-safety modules (salt/ejabberd/files/modules) are compiled and
    loaded, and the archive is a Mnesia majority table: a minority cannot write it."""
    ej = pillar.get("ejabberd", {})
    ebin = f"{ej.get('modules_dir', '/usr/local/lib/xmpptool_ejabberd')}/ebin"
    config = host.file("/etc/ejabberd/ejabberd.yml").content_string
    for module, on in (("mod_durable_ack", ej.get("durable_ack", True)),
                       ("mod_quorum", ej.get("quorum", {}).get("enabled", True))):
        assert host.file(f"{ebin}/{module}.beam").exists, module
        assert (f"\n  {module}:" in config) == bool(on), module
    if ej.get("durable_ack", True):
        info = ejabberdctl(host, "mnesia_table_info", "archive_msg")
        assert "{majority,true}" in info, info[:500]


@pytest.mark.role("ejabberd")
def test_ejabberd_keeps_the_pillar_rooms_with_members_and_archive(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    """On every node (Mnesia's muc_room), as the running node answers: each pillar room
    persistent, members-only, hidden and archived, each member affiliated."""
    domain = domain_of(pillar, "ejabberd")
    muc = pillar["ejabberd"].get("muc", {})
    service = str(muc.get("host") or "conference.@HOST@").replace("@HOST@", domain)
    for name, room in muc.get("rooms", {}).items():
        options = dict(line.split("\t", 1) for line in
                       ejabberdctl(host, "get_room_options", name, service).splitlines()
                       if "\t" in line)
        assert {k: options.get(k) for k in ("persistent", "members_only", "public", "mam")} \
            == {"persistent": "true", "members_only": "true", "public": "false", "mam": "true"}
        affiliations = ejabberdctl(host, "get_room_affiliations", name, service)
        members = set()
        for line in affiliations.splitlines():
            fields = line.split("\t")
            # 23.01: user, domain, affiliation, reason; 24.12: jid, affiliation, reason
            jid, role = (f"{fields[0]}@{fields[1]}", fields[2]) if "@" not in fields[0] \
                else (fields[0], fields[1])
            if role == "member":
                members.add(jid)
        assert {f"{u}@{domain}" for u in room.get("members", [])} <= members, affiliations


@pytest.mark.role("ejabberd")
def test_ejabberd_cluster_membership_equals_pillar(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    nodes = set(ejabberdctl(host, "list_cluster").split())
    assert nodes == ejabberd_expected_nodes(pillar)


@pytest.mark.role("ejabberd")
def test_ejabberd_accounts_present_on_every_node(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    domain = domain_of(pillar, "ejabberd")
    users = set(ejabberdctl(host, "registered_users", domain).split())
    assert set(pillar["ejabberd"]["users"]) <= users


@pytest.mark.role("ejabberd")
def test_ejabberd_serves_lab_certificate_to_the_balancer(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    domain, ca = domain_of(pillar, "ejabberd"), pillar["labtls"]["ca"]["cert"]
    proxy = bool(pillar.get("ejabberd", {}).get("proxy_protocol"))
    for mode, port in (("starttls", 5222), ("direct", 5223)):
        res = probe(host, port=port, mode=mode, domain=domain, ca=ca, proxy=proxy)
        assert res["ok"], f"{mode} {port}: {res['error']}"
        assert domain in res["san"]
    if proxy:  # without the PROXY header the listener refuses the stream
        bare = probe(host, port=5223, mode="direct", domain=domain, ca=ca, proxy=False)
        assert not bare["ok"]


@pytest.mark.role("ejabberd")
def test_ejabberd_upload_listener_serves_the_address_in_its_urls(
    host: testinfra.host.Host, pillar: dict[str, Any], listening: Sockets
) -> None:
    """HTTPS on 5443 with a certificate for the address the upload URLs name (lb's)."""
    ca = pillar["labtls"]["ca"]["cert"]
    proxy = bool(pillar.get("ejabberd", {}).get("proxy_protocol"))
    put_url = pillar["ejabberd"]["upload"]["put_url"]
    address = put_url.split("//", 1)[1].split(":", 1)[0]
    assert on_port(listening, 5443)
    text = host.file("/etc/ejabberd/ejabberd.yml").content_string
    assert f'put_url: "{put_url}"' in text
    res = probe(host, port=5443, mode="https", domain=address, ca=ca, proxy=proxy,
                path="/upload/no-such-slot/x")  # fmt: skip
    assert res["ok"], res["error"]
    assert address in res["ips"]
    assert res["status"] in (403, 404)  # served, and no slot: nothing to get


# --------------------------------------------------------------------------- haproxy

STATS = """
import socket
s = socket.socket(socket.AF_UNIX)
s.connect({path!r})
s.sendall(b"show stat\\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(data.decode())
"""


@pytest.mark.role("haproxy")
def test_haproxy_package_service_and_config(host: testinfra.host.Host) -> None:
    assert host.package("haproxy").is_installed
    assert host.service("haproxy").is_running
    assert host.service("haproxy").is_enabled
    assert host.run("haproxy -c -f /etc/haproxy/haproxy.cfg").rc == 0
    cfg = host.file("/etc/haproxy/haproxy.cfg").content_string
    assert "mode tcp" in cfg and "send-proxy" in cfg


@pytest.mark.role("haproxy")
def test_haproxy_checks_the_nodes_at_the_xmpp_level(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    cfg = host.file("/etc/haproxy/haproxy.cfg").content_string
    domain = domain_of(pillar, "ejabberd")
    assert cfg.count(f"tcp-check send \"<?xml version='1.0'?><stream:stream to='{domain}'") == 2
    assert cfg.count('tcp-check expect string "<stream:features"') == 2
    ca = pillar["haproxy"]["check_ca_file"]
    assert host.file(ca).content_string.strip() == pillar["labtls"]["ca"]["cert"].strip()
    servers = [line.split() for line in cfg.splitlines() if line.strip().startswith("server ")]
    tls = [s for s in servers if s[2].endswith(":5223")]
    assert tls and len(tls) == len([s for s in servers if s[2].endswith(":5222")])
    for s in tls:  # the direct-TLS check verifies the node's certificate for the domain
        opts = " ".join(s[3:])
        assert f"check-ssl check-sni {domain} verify required ca-file {ca} verifyhost {domain}" \
            in opts, opts


@pytest.mark.role("haproxy")
def test_haproxy_listens_for_clients_and_stats_only_on_a_socket(
    listening: Sockets, pillar: dict[str, Any]
) -> None:
    ports = {p for _, p, proc in listening if proc == "haproxy"}
    upload = set(pillar["lab"]["upload"]["lb_ports"].values())  # one per ejabberd node
    assert upload
    assert ports == {5222, 5223} | upload


def haproxy_servers(host: testinfra.host.Host, sock: str) -> dict[tuple[str, str], str]:
    """(backend, server) -> status ("UP", "UP 1/2", "DOWN", ...) from the stats socket."""
    out = host.run(f"python3 - <<'EOF'\n{STATS.format(path=sock)}EOF")
    assert out.rc == 0, out.stderr
    rows = [line.split(",") for line in out.stdout.splitlines() if line and line[0] != "#"]
    return {(r[0], r[1]): r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}


#: how long every server may take to be steadily UP: a node answering one health check
#: late on a slow VM (qemu TCG) shows "UP 1/2" (up, one check failed) until the next
#: check, a second after
BACKENDS_UP_WITHIN = 90.0


@pytest.mark.role("haproxy")
def test_haproxy_backends_up(host: testinfra.host.Host, pillar: dict[str, Any]) -> None:
    """Every cluster member is a server of both XMPP backends and of its own upload
    backend alone, and all of them are UP with no failed check pending, within
    BACKENDS_UP_WITHIN."""
    sock = pillar.get("haproxy", {}).get("stats_socket", "/run/haproxy/admin.sock")
    members = pillar["lab"].get("cluster", {}).get("ejabberd", [])
    expected = set(pillar.get("haproxy", {}).get("servers") or members)
    assert expected
    wanted = {(b, name) for b in ("xmpp-starttls", "xmpp-directtls") for name in expected}
    wanted |= {(f"upload-{name}", name) for name in pillar["lab"]["upload"]["lb_ports"]}
    deadline = time.monotonic() + BACKENDS_UP_WITHIN
    while True:
        servers = haproxy_servers(host, sock)
        for backend in {b for b, _ in wanted}:
            assert {s for (b, s) in servers if b == backend} == {s for (b, s) in wanted
                                                               if b == backend}, backend
        not_up = {k: v for k, v in servers.items() if k in wanted and v != "UP"}
        if not not_up or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert not not_up, f"not UP after {BACKENDS_UP_WITHIN:.0f} s: {not_up}"


@pytest.mark.role("haproxy")
def test_haproxy_passes_tls_through_to_the_cluster(
    host: testinfra.host.Host, pillar: dict[str, Any]
) -> None:
    domain, ca = domain_of(pillar, "ejabberd"), pillar["labtls"]["ca"]["cert"]
    for mode, port in (("starttls", 5222), ("direct", 5223)):
        res = probe(host, port=port, mode=mode, domain=domain, ca=ca)
        assert res["ok"], f"{mode} {port} via haproxy: {res['error']}"
        assert domain in res["san"]
    # Upload ports: HTTPS of the one node behind each, for lb's own address.
    address = pillar["lab"]["hosts"][pillar["_minion_id"]]
    for name, port in pillar["lab"]["upload"]["lb_ports"].items():
        res = probe(host, address=address, port=port, mode="https", domain=address, ca=ca,
                    path="/upload/no-such-slot/x")  # fmt: skip
        assert res["ok"], f"upload port {port} ({name}) via haproxy: {res['error']}"
        assert res["status"] in (403, 404), (name, res["status"])
