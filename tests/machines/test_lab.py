"""The whole lab on booted machines, per Debian release (issue 3).

Order matters within a release (pytest keeps file order per module-scoped
parameter): first apply, second apply, testinfra, end to end, failover last.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from lab import harness, manifest
from tests.infra import roles
from tests.machines.conftest import XMPP_TOOL, LabRun, xmpp_tool

pytestmark = [pytest.mark.machines, pytest.mark.root]

# Where clients connect (the manifest's entries: lb in front of the ejabberd cluster).
LB = f"{harness.ADDRESSES[manifest.entry(harness.LAB, 'ejabberd') or '?']}:5222"
PROSODY = f"{harness.ADDRESSES[manifest.entry(harness.LAB, 'prosody') or '?']}:5222"
CLUSTER = harness.LAB["cluster"]["ejabberd"]


def _ok(results: dict[str, harness.ApplyResult]) -> None:
    assert set(results) == set(harness.ADDRESSES)
    bad = {n: r.describe_failures() for n, r in results.items() if not r.ok}
    assert not bad, "\n\n".join(f"{n}:\n{d}" for n, d in bad.items())


def test_first_apply_succeeds(lab: LabRun) -> None:
    _ok(lab.first)
    for name, res in lab.first.items():
        assert res.changed, f"{name}: the first apply changed nothing"


def test_second_apply_changes_nothing(lab: LabRun) -> None:
    second = lab.lab.apply_all()
    _ok(second)
    changed = {n: r.describe_changes() for n, r in second.items() if r.changed}
    assert not changed, "\n\n".join(f"{n}:\n{d}" for n, d in changed.items())


@pytest.mark.parametrize("machine", list(harness.ADDRESSES))
def test_infra(lab: LabRun, machine: str) -> None:
    """tests/infra, run inside the machine by the salt venv's pytest (--hosts=local://):
    every check of the machine's role from the manifest, passed."""
    role = harness.LAB["machines"][machine]["role"]
    due = len(roles.expected([role]))
    res = lab.lab[machine].run(
        f"cd {harness.CHECKOUT_IN_MACHINE} && python -m pytest -p no:cacheprovider -q "
        f"--hosts=local:// --role={role} tests/infra",
        env={"PYTHONDONTWRITEBYTECODE": "1", "XMPP_TOOL_MINION_ID": machine,
             "XMPP_TOOL_NO_SKIP": "1"},
        check=False, timeout=600)
    assert res.returncode == 0, f"{res.stdout[-6000:]}\n{res.stderr[-3000:]}"
    assert f"tests/infra: {machine}: {due} of {due} checks passed" in res.stdout
    assert re.search(rf"^{due} passed, \d+ deselected in ", res.stdout, re.M), res.stdout[-2000:]


# ------------------------------------------------------------------ xmpp-tool from the host

def send(lab: LabRun, account: str, server: str, to: str, body: str) -> None:
    res = xmpp_tool(lab, account, server, "send", lab.accounts[to]["jid"], body)
    assert res.returncode == 0, f"send {account}->{to} via {server}: {res.returncode} {res.stderr}"


def unread(lab: LabRun, account: str, server: str) -> list[dict[str, Any]]:
    res = xmpp_tool(lab, account, server, "-J", "unread")
    assert res.returncode == 0, f"unread {account} via {server}: {res.returncode} {res.stderr}"
    return [json.loads(line) for line in res.stdout.splitlines() if line.strip()]


def bodies(lab: LabRun, account: str, server: str) -> list[str]:
    return [m["body"] for m in unread(lab, account, server)]


def token(what: str) -> str:
    return f"{what} {uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="module")
def have_cli() -> None:
    if not XMPP_TOOL.exists():
        pytest.skip(f"{XMPP_TOOL} missing (pip install -e .)")


@pytest.mark.usefixtures("have_cli")
def test_send_and_unread_via_prosody(lab: LabRun) -> None:
    body = token("to bob on prosody")
    send(lab, "alice@prosody", PROSODY, "bob@prosody", body)
    got = unread(lab, "bob@prosody", PROSODY)
    mine = [m for m in got if m["body"] == body]
    assert len(mine) == 1
    assert mine[0]["from"].split("/")[0] == lab.accounts["alice@prosody"]["jid"]


@pytest.mark.usefixtures("have_cli")
def test_offline_messages_via_lb_whichever_node(lab: LabRun) -> None:
    """bob is offline while alice sends (each send is a new session, so haproxy
    spreads them over both nodes); every unread session, wherever it lands,
    lists all of them."""
    sent = [token(f"offline {i}") for i in range(4)]
    for body in sent:
        send(lab, "alice@ejabberd", LB, "bob@ejabberd", body)
    for _ in range(3):
        got = bodies(lab, "bob@ejabberd", LB)
        assert [b for b in got if b in sent] == sent


@pytest.mark.usefixtures("have_cli")
def test_wrong_ca_is_refused_via_lb(lab: LabRun, tmp_path: Path) -> None:
    """TLS through the balancer is really verified against the lab CA."""
    other = harness.make_state_dir(tmp_path / "other")  # a different lab CA
    acct = lab.accounts["alice@ejabberd"]
    res = subprocess.run(
        [str(XMPP_TOOL), "-C", str(other / "ca.crt"), "-s", LB, "-u", acct["jid"],
         "send", lab.accounts["bob@ejabberd"]["jid"], "must not arrive"],
        env={**os.environ, "XMPP_TOOL_PASSWORD": acct["password"]},
        text=True, capture_output=True, timeout=60, check=False)
    assert res.returncode == 77, res.stderr


def cluster_nodes(lab: LabRun, machine: str) -> set[str]:
    res = lab.lab[machine].run(["ejabberdctl", "list_cluster"], check=False)
    return {line.strip().strip("'\"") for line in res.stdout.splitlines() if line.strip()}


def wait_cluster(lab: LabRun, machine: str, want: set[str], timeout: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout
    nodes = cluster_nodes(lab, machine)
    while nodes != want and time.monotonic() < deadline:
        time.sleep(1)
        nodes = cluster_nodes(lab, machine)
    return nodes


# ------------------------------------------- xmpp-tool send: several, rooms, files


@pytest.mark.usefixtures("have_cli")
@pytest.mark.parametrize("service", ["prosody", "ejabberd"])
def test_send_to_several_with_one_unknown(lab: LabRun, service: str) -> None:
    """(The lab has two accounts per service, and unread never lists one's own
    messages: bob and an unknown JID.)"""
    server = PROSODY if service == "prosody" else LB
    body = token("to several")
    bob = lab.accounts[f"bob@{service}"]["jid"]
    nobody = f"nobody{uuid.uuid4().hex[:8]}@{bob.split('@')[1]}"
    res = xmpp_tool(lab, f"alice@{service}", server, "-J", "send", "-m", body, nobody, bob)
    assert res.returncode == 76, res.stderr
    assert "1 of 2 recipients refused" in res.stderr and nobody in res.stderr
    outcomes = [(o["recipient"], o["status"]) for o in map(json.loads, res.stdout.splitlines())]
    assert outcomes == [(nobody, "refused"), (bob, "sent")]
    got = bodies(lab, f"bob@{service}", server)
    assert got.count(body) == 1


@pytest.mark.usefixtures("have_cli")
@pytest.mark.parametrize("service", ["prosody", "ejabberd"])
def test_send_to_a_room(lab: LabRun, service: str) -> None:
    """bob creates a room and stays in it; xmpp-tool -g as alice (through lb for
    ejabberd) exits 0 once the room reflected it, and bob sees it."""
    import asyncio

    from lab.slixpeer import Peer

    server = PROSODY if service == "prosody" else LB
    room = f"cli-{uuid.uuid4().hex[:8]}@conference.{harness.LAB['domains'][service]}"
    body = token("to the room")
    acct = lab.accounts[f"bob@{service}"]
    host = server.rsplit(":", 1)[0]

    async def go() -> tuple[Any, tuple[str, str]]:
        async with Peer(acct["jid"], acct["password"], host, 5222,
                        lab.state_dir / "ca.crt") as bob:  # fmt: skip
            await bob.join_room(room, "bob")
            res = await asyncio.to_thread(
                xmpp_tool, lab, f"alice@{service}", server, "send", "-g", room, body)
            got = await bob.next_groupchat(room) if res.returncode == 0 else ("", "")
            await bob.leave_room(room, "bob")
            return res, got

    res, got = asyncio.run(go())
    assert res.returncode == 0, res.stderr
    assert got == (lab.accounts[f"alice@{service}"]["jid"].split("@")[0], body)
    missing = xmpp_tool(lab, f"alice@{service}", server, "send", "-g",
                        f"nosuch-{uuid.uuid4().hex[:8]}@conference."
                        f"{harness.LAB['domains'][service]}", "x")  # fmt: skip
    assert missing.returncode == 76 and "item-not-found" in missing.stderr


@pytest.mark.usefixtures("have_cli")
@pytest.mark.parametrize("service", ["prosody", "ejabberd"])
def test_send_a_file(lab: LabRun, service: str, tmp_path: Path) -> None:
    """xmpp-tool -F (through lb for ejabberd): bob gets the URL; an HTTPS GET of it
    verified against the lab CA returns the same bytes."""
    import ssl
    import urllib.request

    server = PROSODY if service == "prosody" else LB
    content = os.urandom(1024 * 1024 + 7)
    path = tmp_path / "lab-file.bin"
    path.write_bytes(content)
    res = xmpp_tool(lab, f"alice@{service}", server, "-J", "send", "-F", str(path),
                    lab.accounts[f"bob@{service}"]["jid"], timeout=180)  # fmt: skip
    assert res.returncode == 0, res.stderr
    url = json.loads(res.stdout)["url"]
    assert url in bodies(lab, f"bob@{service}", server)
    ctx = ssl.create_default_context(cafile=str(lab.state_dir / "ca.crt"))
    with urllib.request.urlopen(url, context=ctx, timeout=60) as resp:  # noqa: S310 (https)
        assert resp.read() == content


@pytest.mark.usefixtures("have_cli")
def test_failover_and_rejoin(lab: LabRun) -> None:
    seed, node = CLUSTER[0], CLUSTER[-1]
    full = cluster_nodes(lab, seed)
    assert full == {f"ejabberd@{n}" for n in CLUSTER}

    lab.lab[node].run(["systemctl", "stop", "ejabberd"])
    # Logins and sends through lb keep working with one node down.
    sent = [token(f"failover {i}") for i in range(4)]
    for body in sent:
        send(lab, "alice@ejabberd", LB, "bob@ejabberd", body)
    got = bodies(lab, "bob@ejabberd", LB)
    assert [b for b in got if b in sent] == sent

    # Re-applying Salt brings the node back into the cluster.
    res = lab.lab[node].apply()
    assert res.ok, res.describe_failures()
    assert wait_cluster(lab, node, full) == full
    assert wait_cluster(lab, seed, full) == full
    # Whatever node the sessions land on now, the messages are there.
    for _ in range(3):
        got = bodies(lab, "bob@ejabberd", LB)
        assert [b for b in got if b in sent] == sent
