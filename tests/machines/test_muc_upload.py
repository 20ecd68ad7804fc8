"""Group chats (XEP-0045), HTTP File Upload (XEP-0363) and OMEMO (XEP-0384) on the
booted lab, per release.

From the host, which has no DNS for the lab's names: plain slixmpp peers (lab/slixpeer)
log in with the lab accounts (prosody directly, ejabberd through lb), a room on each
MUC service carries a groupchat message from one account to the other, and upload slots
are PUT and then fetched over HTTPS verified against the lab CA, at the addresses the
servers put in the URLs (prosody's own, lb's for ejabberd: one port per node there,
since a file lives on the node that issued its slot).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import urllib.error
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest

from lab import harness, manifest
from lab.slixpeer import Peer
from tests.machines.conftest import LabRun, xmpp_tool

pytestmark = [pytest.mark.machines, pytest.mark.root]

T = TypeVar("T")
SERVICES = ("prosody", "ejabberd")
DOMAINS = harness.LAB["domains"]
ENTRY = {s: harness.ADDRESSES[manifest.entry(harness.LAB, s) or "?"] for s in SERVICES}
CLUSTER = harness.LAB["cluster"]["ejabberd"]
# pillar/lab/map.jinja: each ejabberd node's upload port on lb (5444, 5445, ... in
# manifest order); prosody's HTTPS port (formula default).
EJABBERD_LB_PORTS = {5444 + i for i in range(len(CLUSTER))}
PROSODY_HTTPS_PORT = 5281


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def peer(lab: LabRun, user: str, service: str) -> Peer:
    acct = lab.accounts[f"{user}@{service}"]
    return Peer(acct["jid"], acct["password"], ENTRY[service], 5222,
                lab.state_dir / "ca.crt")  # fmt: skip


def https(method: str, url: str, cafile: Path, data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, bytes]:  # fmt: skip
    assert urlsplit(url).scheme == "https"
    ctx = ssl.create_default_context(cafile=str(cafile))
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - https only
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as resp:  # noqa: S310
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


@pytest.mark.parametrize("service", SERVICES)
def test_the_labs_rooms_are_there_bookmarked_and_archived(lab: LabRun, service: str) -> None:
    """The manifest's rooms, made by Salt: each member has its bookmark (XEP-0402), a
    member who never joined reads a message another member sent (``xmpp-tool send -g``)
    in the room's archive (XEP-0313 on the room's JID), and ``xmpp-tool unread -g``
    lists it for that member, from the bookmark alone."""
    rooms = harness.LAB["rooms"]
    assert rooms, "the lab manifest declares no rooms"
    body = f"to the room {secrets.token_hex(4)}"
    for name, room in rooms.items():
        jid = f"{name}@conference.{DOMAINS[service]}"
        sender, reader = room["members"][0], room["members"][-1]
        for member in room["members"]:
            got = run(bookmarks_of(lab, member, service)).get(jid)
            assert got == (room["title"], member), (member, _bookmark_log(lab, service))
        sent = xmpp_tool(lab, f"{sender}@{service}", f"{ENTRY[service]}:5222",
                         "send", "-g", "-m", body, jid, timeout=120)
        assert sent.returncode == 0, sent.stderr
        archived = run(room_archive_of(lab, reader, service, jid))
        assert [(nick, text) for _, nick, text in archived if text == body] == [(sender, body)]
        listed = xmpp_tool(lab, f"{reader}@{service}", f"{ENTRY[service]}:5222",
                           "-J", "unread", "-g", timeout=120)
        assert listed.returncode == 0, listed.stderr
        unread = [json.loads(line) for line in listed.stdout.splitlines()]
        assert [(m["room"], m["nick"]) for m in unread if m["body"] == body] == [(jid, sender)]


def _bookmark_log(lab: LabRun, service: str) -> str:
    """What the server that published the bookmarks logged about pubsub (a member's
    ejabberd bookmark was once missing after a parallel provisioning: send_stanza's
    exit 0 only says the publish was routed)."""
    name = CLUSTER[0] if service == "ejabberd" else (manifest.entry(harness.LAB, service)
                                                      or service)
    out = lab.lab[name].run(
        "grep -ihE 'pubsub|bookmark|abort|error' /var/log/ejabberd/ejabberd.log "
        "/var/log/prosody/prosody.log 2>/dev/null | tail -n 40", check=False, timeout=60)
    return (out.stdout + out.stderr)[-4000:]


async def bookmarks_of(lab: LabRun, user: str, service: str) -> dict[str, tuple[str, str]]:
    async with peer(lab, user, service) as p:
        return await p.bookmarks()


async def room_archive_of(lab: LabRun, user: str, service: str,
                          room: str) -> list[tuple[str, str, str]]:
    async with peer(lab, user, service) as p:
        return await p.room_archive(room)


@pytest.mark.parametrize("service", SERVICES)
def test_groupchat_in_a_room_of_each_service(lab: LabRun, service: str) -> None:
    room = f"lab-{secrets.token_hex(4)}@conference.{DOMAINS[service]}"

    async def go() -> tuple[str, str]:
        async with peer(lab, "alice", service) as alice, peer(lab, "bob", service) as bob:
            await alice.join_room(room, "alice")  # a lab account may create it
            await bob.join_room(room, "bob")
            await alice.send_groupchat(room, "hello from alice")  # reflected = accepted
            got = await bob.next_groupchat(room)
            await alice.leave_room(room, "alice")
            await bob.leave_room(room, "bob")
            return got

    assert run(go()) == ("alice", "hello from alice")


@pytest.mark.parametrize("service", SERVICES)
def test_upload_put_and_verified_get(lab: LabRun, service: str) -> None:
    """Slots from as many sessions as ejabberd has nodes at once (lb's leastconn puts
    them on different nodes): every URL names an address the host reaches and the
    certificate has; each PUT is readable back byte for byte."""
    cafile = lab.state_dir / "ca.crt"
    sessions = len(CLUSTER) if service == "ejabberd" else 1
    files = [secrets.token_bytes(200_000 + i) for i in range(sessions)]

    async def slots() -> list[tuple[str, dict[str, str], str]]:
        peers = [peer(lab, ("alice", "bob")[i % 2], service) for i in range(sessions)]
        for p in peers:
            await p.start()
        try:
            out = []
            for p, content in zip(peers, files, strict=True):
                jid, _limit = await p.upload_service()
                assert jid == f"upload.{DOMAINS[service]}"
                out.append(await p.upload_slot(jid, "lab.bin", len(content),
                                               "application/octet-stream"))  # fmt: skip
            return out
        finally:
            for p in peers:
                await p.stop()

    got = run(slots())
    ports = set()
    for (put, headers, get), content in zip(got, files, strict=True):
        for url in (put, get):
            assert urlsplit(url).hostname == ENTRY[service], url
        ports.add(urlsplit(put).port)
        # No slot: refused (one byte: ejabberd 23.01 answers before reading a larger
        # body and closes the connection under the client's feet).
        forged = put.rsplit("/", 2)[0] + "/forged/lab.bin"
        assert https("PUT", forged, cafile, b"x")[0] in (401, 403, 404)
        status, _ = https("PUT", put, cafile, content,
                          {**headers, "Content-Type": "application/octet-stream"})  # fmt: skip
        assert status in (200, 201), (put, status)
        assert https("GET", get, cafile) == (200, content)
    if service == "ejabberd":
        assert ports == EJABBERD_LB_PORTS  # every node handed out slots, each its own port
    else:
        assert ports == {PROSODY_HTTPS_PORT}


@pytest.mark.parametrize("service", SERVICES)
def test_omemo_between_lab_accounts(lab: LabRun, service: str, tmp_path: Path) -> None:
    """alice on two machines (two xmpp-tool state directories: two OMEMO devices), bob on
    one.  Both of alice's devices keep their OMEMO 2 bundle on the server (ejabberd keeps
    them only with the formula's force_node_config), bob's ``send -e`` reaches both, and
    alice's ``unread`` on either machine decrypts it; on ejabberd through lb, so the
    runs land on different cluster nodes."""
    where = f"{ENTRY[service]}:5222"
    alice, bob = f"alice@{service}", f"bob@{service}"
    machines = [tmp_path / "laptop", tmp_path / "server"]
    devices = []
    for state in machines:
        got = xmpp_tool(lab, alice, where, "-J", "trust", state=state, timeout=120)
        assert got.returncode == 0, got.stderr
        devices += [d["device"] for d in map(json.loads, got.stdout.splitlines()) if d["own"]]
    assert len(set(devices)) == 2

    async def bundles() -> set[int]:
        async with peer(lab, "bob", service) as p:
            pubsub: Any = p.plugin["xep_0060"]
            iq = await pubsub.get_items(lab.accounts[alice]["jid"], "urn:xmpp:omemo:2:bundles",
                                        timeout=60)  # fmt: skip
            return {int(item["id"]) for item in iq["pubsub"]["items"]}

    assert set(devices) <= run(bundles())
    body = f"sealed {secrets.token_hex(4)}"
    sent = xmpp_tool(lab, bob, where, "send", "-e", lab.accounts[alice]["jid"], body,
                     state=tmp_path / "bob", timeout=120)  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    for state in machines:
        res = xmpp_tool(lab, alice, where, "-J", "unread", "-G", state=state, timeout=120)
        assert res.returncode == 0, res.stderr
        shown = [json.loads(line) for line in res.stdout.splitlines()]
        assert [(m["body"], m["decrypted"]) for m in shown if m["encryption"]] == [(body, True)]
