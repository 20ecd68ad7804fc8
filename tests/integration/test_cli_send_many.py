"""xmpp-tool send to several recipients over one login, message type and subject,
against real prosody and ejabberd on loopback."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from slixmpp import JID
from test_cli_send import new_user, one_line, unread_json, xt

from lab.slixpeer import Peer, peer_for


def test_several_recipients_each_gets_one(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    others = [new_user(server, f"r{i}") for i in range(3)]
    res = xt(server, alice, apw, "-J", "send", "-m", "to all ✓", *[j for j, _ in others])
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(d["recipient"], d["status"]) for d in lines] == [(j, "sent") for j, _ in others]
    assert len({d["id"] for d in lines}) == 3
    for jid, pw in others:
        assert [(m["from"], m["body"]) for m in unread_json(server, jid, pw)] == [
            (alice, "to all ✓")]


def test_body_from_stdin_for_several(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    (b, bpw), (c, cpw) = new_user(server, "b"), new_user(server, "c")
    res = xt(server, alice, apw, "send", "-m", "-", b, c, stdin=b"two lines\nof stdin\n")
    assert res.returncode == 0, res.stderr
    for jid, pw in ((b, bpw), (c, cpw)):
        assert [m["body"] for m in unread_json(server, jid, pw)] == ["two lines\nof stdin"]


def test_one_unknown_recipient_is_76_and_the_others_get_it(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    (b, bpw), (c, cpw) = new_user(server, "b"), new_user(server, "c")
    nobody = f"nobody{uuid.uuid4().hex[:8]}@{server.domain}"
    res = xt(server, alice, apw, "-J", "send", "-m", "partly", b, nobody, c)
    assert res.returncode == 76, res.stderr
    line = one_line(res.stderr)
    assert "1 of 3 recipients refused" in line and nobody in line
    outcomes = {d["recipient"]: d for d in map(json.loads, res.stdout.splitlines())}
    assert [outcomes[j]["status"] for j in (b, nobody, c)] == ["sent", "refused", "sent"]
    assert outcomes[nobody]["error"]  # the XMPP condition, e.g. service-unavailable
    for jid, pw in ((b, bpw), (c, cpw)):
        assert [m["body"] for m in unread_json(server, jid, pw)] == ["partly"]


def test_single_recipient_json_line(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    bob, bpw = new_user(server, "bob")
    res = xt(server, alice, apw, "-J", "send", bob, "one")
    assert res.returncode == 0, res.stderr
    (line,) = res.stdout.splitlines()
    assert json.loads(line)["status"] == "sent"
    assert [m["body"] for m in unread_json(server, bob, bpw)] == ["one"]


async def _receive(server: Any, user: str, password: str, argv: list[str],
                   count: int) -> tuple[Any, list[Any]]:  # fmt: skip
    """Run the CLI while ``user`` is online (available presence: headlines are
    delivered only to online resources) and collect what arrives."""
    got: list[Any] = []
    arrived = asyncio.Event()
    peer: Peer = peer_for(server, user, password)

    def on_message(msg: Any) -> None:
        if msg["type"] != "error" and msg["body"]:
            got.append(msg)
            if len(got) >= count:
                arrived.set()

    peer.add_event_handler("message", on_message)
    async with peer:
        peer.send_presence()
        # the server handles a stream in order: once the ping is answered, bob is online
        await peer.plugin["xep_0199"].send_ping(JID(server.domain), timeout=10)
        res = await asyncio.to_thread(lambda: xt(server, *argv))
        if res.returncode == 0:
            await asyncio.wait_for(arrived.wait(), 10)
    return res, got


def test_headline_with_subject_seen_by_the_recipient(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    bob, bpw = new_user(server, "bob")
    argv = [alice, apw, "send", "-T", "headline", "-S", "Build 42 ✓", bob, "all green"]
    res, got = asyncio.run(_receive(server, bob.split("@")[0], bpw, argv, 1))
    assert res.returncode == 0, res.stderr
    assert [(m["type"], m["subject"], m["body"], m["from"].bare) for m in got] == [
        ("headline", "Build 42 ✓", "all green", alice)]


def test_normal_type_with_subject(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    bob, bpw = new_user(server, "bob")
    argv = [alice, apw, "send", "-T", "normal", "-S", "Re: plans", bob, "tomorrow"]
    res, got = asyncio.run(_receive(server, bob.split("@")[0], bpw, argv, 1))
    assert res.returncode == 0, res.stderr
    assert [(m["type"], m["subject"], m["body"]) for m in got] == [
        ("normal", "Re: plans", "tomorrow")]
