"""Cheap gates for the Salt tree, run on the host before any machine boots.

- `salt-lint` over every sls;
- `state.show_highstate` for every lab machine (minion id) with a freshly generated
  state dir, for Debian 12 and Debian 13 grains;
- `state.apply mock=True` for the same (catches missing requisites);
- a probe that renders the formulas' maps and config templates per release.

(The secret generator, which needs no Salt, is tested in tests/test_secrets.py.)

Salt comes from `.cache/salt-venv` (tests/setup.d/20-salt.sh). The minion config is
lab/minion with its /srv/xmpp-tool paths pointed at this checkout and a temp dir.
Nothing here needs root or touches the host's system: mock mode does not call state
functions (only read-only unless/onlyif probes run).
"""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lab import manifest, saltlocal
from tests.test_secrets import run_secrets

ROOT = Path(__file__).resolve().parents[1]
SALT_CALL = saltlocal.SALT_CALL
SALT_LINT = SALT_CALL.parent / "salt-lint"
LAB = manifest.load()
MACHINES = tuple(manifest.names(LAB))
RELEASES: dict[str, dict[str, Any]] = {
    "debian12": {
        "os": "Debian", "os_family": "Debian", "osfinger": "Debian-12",
        "osrelease": "12", "osmajorrelease": 12, "oscodename": "bookworm",
    },
    "debian13": {
        "os": "Debian", "os_family": "Debian", "osfinger": "Debian-13",
        "osrelease": "13", "osmajorrelease": 13, "oscodename": "trixie",
    },
}

# State IDs each role must have (and, by role, must not have).
EXPECTED_BY_ROLE = {
    "prosody": {
        "lab-apt-package-lists-refreshed", "labtls-ca-certificate-trusted",
        "labtls-prosody.test-certificate-signed-by-lab-ca",
        "mariadb-config-bound-to-loopback", "mariadb-database-prosody-present",
        "mariadb-user-prosody-present",
        "mariadb-user-prosody-granted-all-privileges-on-prosody",
        "prosody-config-file-managed", "prosody-service-running",
        "prosody-user-alice@prosody.test-registered",
        "prosody-user-bob@prosody.test-registered",
    },
    "ejabberd": {
        "ejabberd-package-daemon-start-blocked-during-install",
        "ejabberd-config-systemd-dropin-plain-service", "ejabberd-config-systemd-reloaded",
        "ejabberd-config-erlang-cookie", "ejabberd-service-running",
        "labtls-ejabberd.test-certificate-signed-by-lab-ca",
        "ejabberd-config-mnesia-schema", "ejabberd-storage-mnesia-tables-as-pillar-says",
    },
    "haproxy": {"haproxy-config-tcp-passthrough-to-cluster", "haproxy-service-running",
                # the lab CA, which the TLS health check verifies the nodes with
                "labtls-ca-certificate-trusted"},
}
# Every machine, whatever its role.
EXPECTED_EVERYWHERE = {"firewall-config-ruleset-inbound-default-drop",
                       "firewall-service-ruleset-loaded"}
FORBIDDEN_BY_ROLE = {
    "prosody": ("ejabberd-", "haproxy-"),
    "ejabberd": ("prosody-", "mariadb-", "haproxy-"),
    "haproxy": ("prosody-", "mariadb-", "ejabberd-", "labtls-prosody", "labtls-ejabberd"),
}


CLUSTER = LAB["cluster"]["ejabberd"]
# Machines whose pillar the map probes use: one per role; for ejabberd a joining node.
PROBED = {"prosody": manifest.with_role(LAB, "prosody")[0], "ejabberd": CLUSTER[-1],
          "haproxy": manifest.with_role(LAB, "haproxy")[0]}


def room_states(role: str) -> set[str]:
    """The manifest's rooms on a server of ``role``: created, each member affiliated
    and bookmarked."""
    domain = LAB["domains"][role]
    out = set()
    for name, room in LAB.get("rooms", {}).items():
        jid = f"{name}@conference.{domain}"
        out.add(f"{role}-room-{jid}-created")
        for user in room["members"]:
            out |= {f"{role}-room-{jid}-member-{user}@{domain}",
                    f"{role}-room-{jid}-bookmarked-for-{user}@{domain}"}
    return out


def expected(machine: str) -> set[str]:
    """The role's states; a cluster's seed registers the users and makes the rooms,
    the others join it."""
    role = LAB["machines"][machine]["role"]
    out = set(EXPECTED_BY_ROLE[role]) | EXPECTED_EVERYWHERE
    if role == "prosody":
        out |= room_states(role)
    members = LAB["cluster"].get(LAB["machines"][machine].get("cluster"), [])
    if members and members[0] != machine:
        out.add(f"ejabberd-cluster-joined-ejabberd@{members[0]}")
    elif members:
        out |= {"ejabberd-cluster-seed-or-single-node",
                "ejabberd-user-alice@ejabberd.test-registered",
                "ejabberd-user-bob@ejabberd.test-registered"} | room_states(role)
    return out


def forbidden(machine: str) -> tuple[str, ...]:
    out = FORBIDDEN_BY_ROLE[LAB["machines"][machine]["role"]]
    members = LAB["cluster"].get(LAB["machines"][machine].get("cluster"), [])
    if members and members[0] != machine:
        # Users and rooms are made once, on the seed; the other nodes get them by Mnesia.
        out += ("ejabberd-user-", "ejabberd-room-")
    return out


# The maps find their formula's root from `tpldir` (template-formula's tplroot), which
# in this probe (at the top of the tree) is set by hand for each import.
PROBE = """\
{%- set tpldir = 'prosody' %}{%- from 'prosody/map.jinja' import prosody with context %}
{%- set tpldir = 'ejabberd' %}{%- from 'ejabberd/map.jinja' import ejabberd with context %}
{%- set tpldir = 'haproxy' %}{%- from 'haproxy/map.jinja' import haproxy with context %}
{%- set tpldir = 'mariadb' %}{%- from 'mariadb/map.jinja' import mariadb with context %}
{%- set r = salt['slsutil.renderer'] %}
{%- set out = {
  'prosody': prosody, 'ejabberd': ejabberd, 'haproxy': haproxy,
  'prosody_cfg': r(path='salt://prosody/files/prosody.cfg.lua.jinja',
                   default_renderer='jinja', prosody=prosody),
  'ejabberd_yml': r(path='salt://ejabberd/files/ejabberd.yml.jinja',
                    default_renderer='jinja', ejabberd=ejabberd),
  'ejabberdctl_cfg': r(path='salt://ejabberd/files/ejabberdctl.cfg.jinja',
                       default_renderer='jinja', ejabberd=ejabberd),
  'epmd_socket': r(path='salt://ejabberd/files/epmd-socket.conf.jinja',
                   default_renderer='jinja', ejabberd=ejabberd),
  'haproxy_cfg': r(path='salt://haproxy/files/haproxy.cfg.jinja',
                   default_renderer='jinja', haproxy=haproxy),
  'mariadb_cnf': r(path='salt://mariadb/files/server.cnf.jinja',
                   default_renderer='jinja', mariadb=mariadb),
} %}
gate-probe:
  test.nop:
    - name: {{ out | json | json }}
"""

pytestmark = pytest.mark.salt  # Salt's venv: bash tests/setup.d/20-salt.sh


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("salt-gates")
    state = work / "state"
    proc = run_secrets(state)
    assert proc.returncode == 0, proc.stderr
    probe_root = work / "probe"
    probe_root.mkdir()
    (probe_root / "gate_probe.sls").write_text(PROBE)
    return work


def config_dir(work: Path, release: str, machine: str, kind: str) -> Path:
    """lab/minion pointed at the checkout and the probe, one per salt-call."""
    return saltlocal.config_dir(work / f"conf-{kind}-{release}-{machine}", work / "state",
                                grains=RELEASES[release], extra_file_roots=[work / "probe"])


def salt_call(conf: Path, machine: str, *args: str) -> subprocess.CompletedProcess[str]:
    return saltlocal.salt_call(conf, machine, *args)


@pytest.fixture(scope="module")
def results(workdir: Path) -> dict[tuple[str, str, str], subprocess.CompletedProcess[str]]:
    """Every salt-call of the gates, run concurrently (each ~4-10 s of Python startup)."""
    jobs: list[tuple[str, str, str, tuple[str, ...]]] = []
    for release in RELEASES:
        for machine in MACHINES:
            jobs.append(("highstate", release, machine, ("state.show_highstate",)))
            jobs.append(("mock", release, machine, ("state.apply", "mock=True")))
        # Each formula's map with the pillar of a machine of its role.
        for machine in PROBED.values():
            jobs.append(("probe", release, machine, ("state.show_sls", "gate_probe")))

    def one(job: tuple[str, str, str, tuple[str, ...]]) -> subprocess.CompletedProcess[str]:
        kind, release, machine, args = job
        return salt_call(config_dir(workdir, release, machine, kind), machine, *args)

    with ThreadPoolExecutor(max_workers=3) as pool:
        outs = list(pool.map(one, jobs))
    return {(k, r, m): out for (k, r, m, _), out in zip(jobs, outs, strict=True)}


def parse(proc: subprocess.CompletedProcess[str]) -> Any:
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"rc={proc.returncode}\n{tail}"
    data = json.loads(proc.stdout)["local"]
    assert isinstance(data, dict), f"render errors: {data}"
    return data


def test_salt_lint_is_clean() -> None:
    sls = sorted(str(p) for p in (ROOT / "salt").rglob("*.sls"))
    assert len(sls) >= 20
    proc = subprocess.run([str(SALT_LINT), *sls], capture_output=True, text=True,
                          check=False, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine", MACHINES)
def test_show_highstate_renders_the_role_of_each_machine(
    results: dict[tuple[str, str, str], subprocess.CompletedProcess[str]],
    machine: str, release: str,
) -> None:
    states = parse(results[("highstate", release, machine)])
    assert expected(machine) <= set(states), expected(machine) - set(states)
    wrong = [s for s in states if s.startswith(forbidden(machine))]
    assert not wrong, f"{machine} got states of another role: {wrong}"
    # Every cmd.run is bounded by unless/onlyif/creates/onchanges (re-apply = no change).
    for sid, body in states.items():
        for fun, args in body.items():
            if fun.startswith("__") or "run" not in args or fun != "cmd":
                continue
            keys = {k for a in args if isinstance(a, dict) for k in a}
            assert keys & {"unless", "onlyif", "creates", "onchanges"}, f"unbounded cmd.run {sid}"


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("machine", MACHINES)
def test_mock_apply_succeeds_for_each_machine(
    results: dict[tuple[str, str, str], subprocess.CompletedProcess[str]],
    machine: str, release: str,
) -> None:
    ret = parse(results[("mock", release, machine)])
    highstate = parse(results[("highstate", release, machine)])
    failed = {k: v.get("comment") for k, v in ret.items() if v.get("result") is False}
    assert not failed
    ran = {v["__id__"] for v in ret.values()}
    assert expected(machine) <= ran
    assert ran == set(highstate)


def probe(results: dict[tuple[str, str, str], subprocess.CompletedProcess[str]],
          release: str, machine: str = PROBED["ejabberd"]) -> dict[str, Any]:
    data = parse(results[("probe", release, machine)])
    name = data["gate-probe"]["test"][0]["name"]
    out: dict[str, Any] = json.loads(name)
    return out


def test_prosody_release_differences(
    results: dict[tuple[str, str, str], subprocess.CompletedProcess[str]],
) -> None:
    """What pillar and map.jinja decide per machine and release. What the template's
    fixed options *do* (TLS required, no in-band registration, every message archived,
    250 per archive page, rooms, uploads) is proven by a real prosody running this same
    template: tests/integration/test_servers*.py."""
    p12, p13 = (probe(results, r, PROBED["prosody"]) for r in ("debian12", "debian13"))
    assert '"posix";' in p12["prosody_cfg"]  # 0.12 needs mod_posix
    assert "posix" not in p13["prosody_cfg"]  # deprecated in 13
    address = LAB["hosts"][PROBED["prosody"]]
    for cfg in (p12["prosody_cfg"], p13["prosody_cfg"]):
        # the lab's storage is MariaDB (the integration servers use SQLite)
        assert 'storage = "sql"' in cfg and 'driver = "MySQL";' in cfg
        assert 'VirtualHost "prosody.test"' in cfg
        assert 'Component "conference.prosody.test" "muc"' in cfg
        assert 'Component "upload.prosody.test" "http_file_share"' in cfg
        # upload URLs on the machine's own address
        assert f'http_external_url = "https://{address}:5281/"' in cfg


def test_ejabberd_node_distribution_and_listeners(
    results: dict[tuple[str, str, str], subprocess.CompletedProcess[str]],
) -> None:
    for release, version in (("debian12", "23.01"), ("debian13", "24.12")):
        p = probe(results, release)
        assert p["ejabberd"]["version"] == version
        ctl = p["ejabberdctl_cfg"]
        node = PROBED["ejabberd"]
        assert f"ERLANG_NODE=ejabberd@{node}" in ctl
        assert "ERL_DIST_PORT=4370" in ctl
        assert f"INET_DIST_INTERFACE={LAB['hosts'][node]}" in ctl
        assert "ListenStream=127.0.0.1:4369" in p["epmd_socket"]
        assert p["ejabberd"]["seed"] == f"ejabberd@{CLUSTER[0]}"
        assert p["ejabberd"]["cluster"]["nodes"] == [f"ejabberd@{n}" for n in CLUSTER]
        yml = p["ejabberd_yml"]
        # Behind lb: the PROXY header on c2s, direct TLS and upload (the integration
        # server, alone, has none); what the fixed modules do (archive always, offline,
        # PEP/MDS, rooms, uploads) is proven by a real ejabberd running this same
        # template: tests/integration/test_servers*.py.
        assert yml.count("use_proxy_protocol: true") == 3
        # uploads on 5443, URLs on this node's own port on lb
        entry = LAB["hosts"][LAB["entries"]["ejabberd"]]
        lb_port = 5444 + CLUSTER.index(node)
        assert f'put_url: "https://{entry}:{lb_port}/upload"' in yml
        assert p["ejabberd"]["mnesia_storage"] == {
            "archive_msg": "disc_copies", "archive_prefs": "disc_copies",
            "offline_msg": "disc_copies"}


def test_haproxy_and_mariadb_configs(
    results: dict[tuple[str, str, str], subprocess.CompletedProcess[str]],
) -> None:
    cfg = probe(results, "debian13", PROBED["haproxy"])["haproxy_cfg"]
    assert "mode tcp" in cfg
    for port in (5222, 5223):
        assert f"bind 0.0.0.0:{port}" in cfg
        for node in CLUSTER:  # every member of the manifest's cluster, at its address
            assert f"server {node} {LAB['hosts'][node]}:{port} check" in cfg
    # One upload port per node, forwarding to that node only (its files live there).
    for i, node in enumerate(CLUSTER):
        upload = cfg.split(f"frontend upload-{node}\n")[1].split("\nfrontend")[0]
        assert f"bind 0.0.0.0:{5444 + i}" in upload
        assert upload.count("\tserver ") == 1
        assert f"server {node} {LAB['hosts'][node]}:5443 check" in upload
    assert cfg.count("send-proxy check-send-proxy") == 3 * len(CLUSTER)
    assert "stats socket /run/haproxy/admin.sock" in cfg
    mariadb_cnf = probe(results, "debian13", PROBED["prosody"])["mariadb_cnf"]
    assert "bind-address = 127.0.0.1" in mariadb_cnf
