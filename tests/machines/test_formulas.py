"""Each formula on its own: applied to a fresh machine (nspawn, trixie) with nothing
but its pillar.example, plus what it declares it needs -- no lab pillar, no other
formula's pillar, no `lab` states, no /etc/hosts entries.

* ejabberd, haproxy: their pillar.example alone (Debian's snake-oil certificate);
* labtls: its pillar.example with a real CA (from lab/secrets.py) for the placeholders;
* prosody: its pillar.example and mariadb's (prosody's `database_sls` names the
  mariadb.database states, applied through the `- sls:` requisite, nothing else).

The four machines boot and apply in parallel; one release is enough (the lab itself
is proven on both by test_lab.py).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import harness
from tests.machines.conftest import CHECKOUT

pytestmark = [pytest.mark.machines, pytest.mark.root]

RELEASE = "trixie"
IN_STATE = f"{harness.CHECKOUT_IN_MACHINE}/lab/state"
# formula -> (machine, the formulas whose pillar.example it gets, what else it needs)
CASES: dict[str, tuple[str, list[str], list[str]]] = {
    "ejabberd": ("f-ejabberd", ["ejabberd"], []),
    "firewall": ("f-firewall", ["firewall"], []),
    "haproxy": ("f-haproxy", ["haproxy"], []),
    "labtls": ("f-labtls", ["labtls"], ["ca"]),
    "prosody": ("f-prosody", ["prosody", "mariadb"], []),
}
ADDRESSES = {machine: f"{harness.SUBNET}.{60 + i}"
             for i, (machine, _, _) in enumerate(CASES.values())}


def minion_config(formula: str) -> str:
    """The lab's minion config, but the pillar is only this formula's examples."""
    text = (CHECKOUT / "lab" / "minion").read_text()
    pillar_root = f"{IN_STATE}/pillar-{formula}"
    out = []
    skip = False
    for line in text.splitlines():
        if line.startswith("pillar_roots:"):
            out += ["pillar_roots:", "  base:", f"    - {pillar_root}"]
            skip = True
            continue
        if skip and line.startswith(" "):
            continue
        skip = False
        out.append(line)
    return "\n".join(out) + "\n"


def prepare(state_dir: Path, formula: str, examples: list[str], extra: list[str]) -> None:
    conf = state_dir / f"conf-{formula}"
    conf.mkdir(parents=True)
    (conf / "minion").write_text(minion_config(formula))
    pillar = state_dir / f"pillar-{formula}"
    pillar.mkdir()
    names = []
    for example in examples:
        shutil.copy(CHECKOUT / "salt" / example / "pillar.example", pillar / f"ex_{example}.sls")
        names.append(f"ex_{example}")
    if "ca" in extra:  # a real CA for labtls's placeholders (what it says it needs)
        secrets = harness.make_state_dir(state_dir / "secrets")
        lines = [ln for ln in (secrets / "secrets.sls").read_text().splitlines()
                 if not ln.startswith("#")]
        ca = json.loads("\n".join(lines))["labtls"]["ca"]
        (pillar / "ca.sls").write_text(json.dumps({"labtls": {"ca": ca}}))
        names.append("ca")
    (pillar / "top.sls").write_text("base:\n  '*':\n" + "".join(f"    - {n}\n" for n in names))


@dataclass
class Solo:
    machine: harness.Machine
    first: harness.ApplyResult | None = None


@pytest.fixture(scope="module")
def applied(rootfs_builds: dict[str, Future[Path]],
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Solo]]:
    if RELEASE in rootfs_builds:
        rootfs_builds[RELEASE].result()
    state_dir = tmp_path_factory.mktemp("formulas")
    for formula, (_, examples, extra) in CASES.items():
        prepare(state_dir, formula, examples, extra)
    solos = {formula: Solo(harness.Machine(machine, RELEASE, ADDRESSES[machine], state_dir))
             for formula, (machine, _, _) in CASES.items()}
    harness.install_cleanup_handlers()
    try:
        def one(formula: str) -> None:
            solo = solos[formula]
            solo.machine.boot()
            solo.first = solo.machine.apply(formula, config_dir=f"{IN_STATE}/conf-{formula}")

        threads = [threading.Thread(target=one, args=(f,)) for f in CASES]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        yield solos
    finally:
        for solo in solos.values():
            solo.machine.stop()


@pytest.mark.parametrize("formula", list(CASES))
def test_formula_applies_alone_from_its_pillar_example(
    applied: dict[str, Solo], formula: str
) -> None:
    res = applied[formula].first
    assert res is not None, f"{formula}: the machine did not boot or apply"
    assert res.ok, res.describe_failures()
    assert res.changed
    # Nothing but the formula (and what it named by `- sls:`) ran.
    prefixes = (formula, *(("mariadb",) if formula == "prosody" else ()))
    foreign = [st.get("__id__", sid) for sid, st in res.states.items()
               if not str(st.get("__id__", sid)).startswith(prefixes)]
    assert not foreign, foreign


def test_standalone_ejabberd_serves_its_users(applied: dict[str, Solo]) -> None:
    m = applied["ejabberd"].machine
    users = m.run(["ejabberdctl", "registered_users", "chat.example.test"]).stdout.split()
    assert {"alice", "bob"} <= set(users)
    # the example's room, with its members (23.01: user, host, affiliation; 24.12: jid,
    # affiliation; tab-separated)
    listed = m.run(["ejabberdctl", "get_room_affiliations", "ops",
                    "conference.chat.example.test"]).stdout.splitlines()
    members = set()
    for line in listed:
        f = line.split("\t")
        jid, affiliation = (f[0], f[1]) if "@" in f[0] else (f"{f[0]}@{f[1]}", f[2])
        if affiliation == "member":
            members.add(jid)
    assert {"alice@chat.example.test", "bob@chat.example.test"} <= members, listed


def test_standalone_prosody_stores_accounts_in_mariadb(
    applied: dict[str, Solo],
) -> None:
    m = applied["prosody"].machine
    sql = "SELECT COUNT(*) FROM prosody WHERE host='chat.example.test' AND store='accounts'"
    out = m.run(["mariadb", "-NB", "prosody", "-e", sql]).stdout.strip()
    assert int(out) >= 2
    assert m.run(["systemctl", "is-active", "prosody"]).stdout.strip() == "active"
    # the example's room, stored (a restart keeps it) with its members
    sql = ("SELECT COUNT(*) FROM prosody WHERE host='conference.chat.example.test' "
           "AND store='persistent' AND `key`='ops@conference.chat.example.test'")
    assert m.run(["mariadb", "-NB", "prosody", "-e", sql]).stdout.strip() == "1"


def test_standalone_haproxy_and_labtls(applied: dict[str, Solo]) -> None:
    lb = applied["haproxy"].machine
    assert lb.run(["systemctl", "is-active", "haproxy"]).stdout.strip() == "active"
    m = applied["labtls"].machine
    m.run(["openssl", "verify", "-CAfile", "/usr/local/share/ca-certificates/xmpp-tool-lab-ca.crt",
           "/etc/ssl/lab/chat.example.test.crt"])


def test_standalone_firewall_loads_its_table(applied: dict[str, Solo]) -> None:
    m = applied["firewall"].machine
    rules = m.run(["nft", "list", "table", "inet", "lab_firewall"]).stdout
    assert "policy drop;" in rules
    assert "tcp dport 22 accept" in rules
    assert "ip saddr 192.0.2.0/24 tcp dport { 5222, 5223 } accept" in rules
