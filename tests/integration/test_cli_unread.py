"""xmpp-tool unread against real prosody and ejabberd: non-destructive, XEP-0490
pointers that slixmpp's own client reads, messages from another client, 10,000
archived messages in order."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lab.slixpeer import Peer

XMPP_TOOL = Path(sys.executable).parent / "xmpp-tool"
#: what -J unread -c says of the rooms of an account without bookmarks
NO_ROOMS: dict[str, dict[str, int]] = {"rooms": {}, "mentions": {}}
T = TypeVar("T")


def new_user(server: Any, prefix: str) -> tuple[str, str]:
    user = f"{prefix}{uuid.uuid4().hex[:10]}"
    password = f"pw-{uuid.uuid4().hex}"
    return server.register(user, password), password


def xt(
    server: Any, jid: str, password: str, *args: str, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XMPP_TOOL")}
    env["XMPP_TOOL_PASSWORD"] = password
    return subprocess.run(
        [str(XMPP_TOOL), "-C", str(server.cafile), "-s", server.server, "-u", jid, *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def unread(server: Any, jid: str, password: str, *args: str) -> list[dict[str, str]]:
    res = xt(server, jid, password, "-J", "unread", *args)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return [json.loads(line) for line in res.stdout.splitlines()]


def send(server: Any, jid: str, password: str, to: str, body: str) -> None:
    res = xt(server, jid, password, "send", to, body)
    assert res.returncode == 0, res.stderr


def with_peer(server: Any, jid: str, password: str, action: Callable[[Peer], Awaitable[T]]) -> T:
    """Run ``action`` with a plain slixmpp client (no presence) logged in as ``jid``."""

    async def main() -> T:
        async with Peer(jid, password, server.host, server.port, server.cafile) as peer:
            return await action(peer)

    return asyncio.run(main())


@pytest.fixture
def trio(xmpp_server: Any) -> tuple[Any, dict[str, tuple[str, str]]]:
    users = {name: new_user(xmpp_server, name) for name in ("alice", "bob", "carol")}
    return xmpp_server, users


def test_unread_twice_shows_the_same(trio: tuple[Any, dict[str, tuple[str, str]]]) -> None:
    server, users = trio
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    for i in range(3):
        send(server, alice, apw, bob, f"message {i}")
    if server.kind == "ejabberd":
        assert server.offline_count(bob.split("@")[0]) == 3
    first = unread(server, bob, bpw)
    second = unread(server, bob, bpw)
    assert [m["body"] for m in first] == ["message 0", "message 1", "message 2"]
    assert second == first
    text = xt(server, bob, bpw, "unread")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 3
    if server.kind == "ejabberd":  # nothing was consumed from offline storage
        assert server.offline_count(bob.split("@")[0]) == 3


def test_mark_read_then_nothing_and_slixmpp_reads_the_pointers(
    trio: tuple[Any, dict[str, tuple[str, str]]],
) -> None:
    server, users = trio
    (alice, apw), (bob, bpw), (carol, cpw) = users["alice"], users["bob"], users["carol"]
    send(server, alice, apw, bob, "from alice 1")
    send(server, carol, cpw, bob, "from carol")
    send(server, alice, apw, bob, "from alice 2")

    shown = unread(server, bob, bpw, "-m")
    assert [(m["from"], m["body"]) for m in shown] == [
        (alice, "from alice 1"),
        (carol, "from carol"),
        (alice, "from alice 2"),
    ]
    assert unread(server, bob, bpw) == []
    count = xt(server, bob, bpw, "-J", "unread", "-c")
    assert json.loads(count.stdout) == {"total": 0, "contacts": {}, **NO_ROOMS}

    # slixmpp's own XEP-0490 client sees one pointer per contact (on ejabberd
    # too: the second publish did not replace the first)
    pointers = with_peer(server, bob, bpw, lambda p: p.mds_pointers())
    assert pointers == {alice: shown[2]["id"], carol: shown[1]["id"]}

    # new messages after the pointers are unread again, the old ones are not
    send(server, alice, apw, bob, "from alice 3")
    assert [m["body"] for m in unread(server, bob, bpw)] == ["from alice 3"]


def test_mark_read_respects_limit(trio: tuple[Any, dict[str, tuple[str, str]]]) -> None:
    server, users = trio
    (alice, apw), (bob, bpw) = users["alice"], users["bob"]
    for i in range(4):
        send(server, alice, apw, bob, f"m{i}")
    assert [m["body"] for m in unread(server, bob, bpw, "-n", "2")] == ["m0", "m1"]
    assert [m["body"] for m in unread(server, bob, bpw, "-m", "-n", "3")] == ["m0", "m1", "m2"]
    assert [m["body"] for m in unread(server, bob, bpw)] == ["m3"]


def test_counts(trio: tuple[Any, dict[str, tuple[str, str]]]) -> None:
    server, users = trio
    (alice, apw), (bob, bpw), (carol, cpw) = users["alice"], users["bob"], users["carol"]
    send(server, alice, apw, bob, "a1")
    send(server, alice, apw, bob, "a2")
    send(server, carol, cpw, bob, "c1")
    plain = xt(server, bob, bpw, "unread", "-c")
    assert (plain.returncode, plain.stdout) == (0, "3\n")
    per = xt(server, bob, bpw, "-J", "unread", "-c")
    assert json.loads(per.stdout) == {"total": 3, "contacts": {alice: 2, carol: 1}, **NO_ROOMS}


def test_own_reply_marks_a_conversation_without_pointer_read(
    trio: tuple[Any, dict[str, tuple[str, str]]],
) -> None:
    server, users = trio
    (alice, apw), (bob, bpw), (carol, cpw) = users["alice"], users["bob"], users["carol"]
    send(server, alice, apw, bob, "question")
    send(server, carol, cpw, bob, "unrelated")
    send(server, bob, bpw, alice, "answer")  # bob answered alice, not carol
    assert [(m["from"], m["body"]) for m in unread(server, bob, bpw)] == [(carol, "unrelated")]
    send(server, alice, apw, bob, "follow-up")
    assert [m["body"] for m in unread(server, bob, bpw)] == ["unrelated", "follow-up"]


def test_message_from_another_client_while_offline(
    trio: tuple[Any, dict[str, tuple[str, str]]],
) -> None:
    server, users = trio
    (carol, cpw), (bob, bpw) = users["carol"], users["bob"]

    async def write(peer: Peer) -> str:
        return str(await peer.send_chat(bob, "sent by a plain slixmpp client"))

    with_peer(server, carol, cpw, write)
    msgs = unread(server, bob, bpw)
    assert [(m["from"], m["body"]) for m in msgs] == [(carol, "sent by a plain slixmpp client")]
    if server.kind == "ejabberd":
        assert server.offline_count(bob.split("@")[0]) == 1


def test_ten_thousand_archived_messages_in_order(xmpp_server: Any) -> None:
    server = xmpp_server
    sender, spw = new_user(server, "loud")
    reader, rpw = new_user(server, "reader")
    n = 10_000
    bodies = [f"seed {i}" for i in range(n)]
    started = time.monotonic()
    # (seed(): the sender's own archiving is off, half the archive writes)
    sent = with_peer(server, sender, spw, lambda p: p.seed(reader, n, prefix="seed"))
    assert sent == n
    injected = time.monotonic() - started

    res = xt(server, reader, rpw, "-J", "unread")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == n
    got = [json.loads(line) for line in lines]
    assert [m["body"] for m in got] == bodies  # all of them, oldest first
    assert {m["from"] for m in got} == {sender}
    assert len({m["id"] for m in got}) == n
    # As instants: a stamp on a whole second has no fraction (iso_utc), so the strings
    # alone do not sort.
    stamps = [datetime.fromisoformat(m["timestamp"]) for m in got]
    assert stamps == sorted(stamps)

    print(
        f"{server.kind}: injected {n} in {injected:.1f} s, "
        f"listed in {time.monotonic() - started - injected:.1f} s"
    )


def test_xep0013_view_fallback_on_ejabberd(ejabberd_server: Any) -> None:
    """The code path for servers without MAM, run against ejabberd's real XEP-0013
    (the CLI itself prefers MAM, which this server also has)."""

    from xmpp_tool import session as xt_session
    from xmpp_tool import unread as xt_unread
    from xmpp_tool.config import Settings

    server = ejabberd_server
    alice, apw = new_user(server, "alice")
    bob, bpw = new_user(server, "bob")
    for body in ("offline one", "offline two", "offline three"):
        send(server, alice, apw, bob, body)
    user = bob.split("@")[0]
    assert server.offline_count(user) == 3
    settings = Settings(jid=bob, host=server.host, port=server.port, cafile=server.cafile)

    def view(count_only: bool) -> Any:
        found = xt_unread.Listing()

        async def offline(sess: Any) -> None:
            await xt_unread._unread_offline(sess, found, count_only, None)

        xt_session.run_session(settings, bpw, xt_unread.PLUGINS, offline)
        return found

    msgs = view(False).messages
    assert [(m.sender, m.body) for m in msgs] == [
        (alice, "offline one"), (alice, "offline two"), (alice, "offline three")]
    assert all(m.id and m.timestamp.tzinfo for m in msgs)
    counted = view(True)
    assert (counted.contacts, counted.messages) == ({alice: 3}, [])
    assert server.offline_count(user) == 3  # viewed, not removed
