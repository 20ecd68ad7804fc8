"""xmpp-tool send -g: group chats (XEP-0045) on real prosody and ejabberd.

A second client (lab/slixpeer's Peer with xep_0045) creates and configures the
room, stays in it and sees what the CLI sends; the CLI runs meanwhile in a thread.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form
from test_cli_send import new_user, one_line, xt

from lab.slixpeer import Peer, peer_for


def new_room(server: Any) -> str:
    return str(server.room(f"room{uuid.uuid4().hex[:10]}"))


async def _configure(owner: Peer, room: str, fields: dict[str, Any]) -> None:
    """Unlock a new room (instant room), with ``fields`` changed from the defaults
    (those the server's form has: prosody protects a room by its secret alone,
    ejabberd also has a passwordprotectedroom switch)."""
    muc = owner.plugin["xep_0045"]
    if not fields:
        empty: Any = Form()  # type: ignore[no-untyped-call]  # slixmpp is untyped here
        await muc.set_room_config(JID(room), empty, timeout=10)
        return
    form: Any = await muc.get_room_config(JID(room), timeout=10)
    known = form.get_fields()
    submit: Any = Form()  # type: ignore[no-untyped-call]
    submit.add_field(var="FORM_TYPE", ftype="hidden",
                     value="http://jabber.org/protocol/muc#roomconfig")  # fmt: skip
    for var, value in fields.items():
        if var in known:
            submit.add_field(var=var, value=value)
    assert len(submit.get_fields()) > 1, (fields, list(known))
    await muc.set_room_config(JID(room), submit, timeout=10)


def with_room(
    server: Any, room: str, config: dict[str, Any] | None,
    action: Callable[[Peer, list[Any]], Awaitable[Any]],
) -> Any:  # fmt: skip
    """Owner creates ``room`` (``config`` None: no room at all), stays in it,
    collects the groupchat messages and runs ``action(owner, messages)``."""

    async def main() -> Any:
        user, password = new_user(server, "owner")
        owner = peer_for(server, user.split("@")[0], password)
        got: list[Any] = []
        owner.add_event_handler("groupchat_message", got.append)
        async with owner:
            if config is not None:
                await owner.plugin["xep_0045"].join_muc_wait(
                    JID(room), "owner", maxstanzas=0, timeout=10)
                await _configure(owner, room, config)
            return await action(owner, got)

    return asyncio.run(main())


async def _cli(server: Any, *args: str, env: dict[str, str] | None = None) -> Any:
    return await asyncio.to_thread(lambda: xt(server, *args, env=env))


async def wait_for_messages(got: list[Any], count: int) -> None:
    for _ in range(100):
        if len(got) >= count:
            return
        await asyncio.sleep(0.05)


def test_groupchat_reaches_the_room(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    room = new_room(server)

    async def action(owner: Peer, got: list[Any]) -> Any:
        res = await _cli(server, alice, apw, "-J", "send", "-g", room, "hello room ✓")
        await wait_for_messages(got, 1)
        return res, [(m["from"].resource, m["body"], m["type"]) for m in got]

    res, seen = with_room(server, room, {}, action)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["status"] == "sent"
    assert seen == [(alice.split("@")[0], "hello room ✓", "groupchat")]


def test_nick_option_and_several_rooms(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    room = new_room(server)
    missing = new_room(server)

    async def action(owner: Peer, got: list[Any]) -> Any:
        res = await _cli(server, alice, apw, "-J", "send", "-g", "-N", "ci-bot", "-m", "build ok",
                         room, missing)  # fmt: skip
        await wait_for_messages(got, 1)
        return res, [(m["from"].resource, m["body"]) for m in got]

    res, seen = with_room(server, room, {}, action)
    assert res.returncode == 76
    assert "1 of 2 recipients refused" in one_line(res.stderr)
    outcomes = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(o["recipient"], o["status"]) for o in outcomes] == [(room, "sent"),
                                                                   (missing, "refused")]
    assert seen == [("ci-bot", "build ok")]


def test_room_that_does_not_exist_is_76_and_is_not_created(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    room = new_room(server)

    async def action(owner: Peer, got: list[Any]) -> Any:
        res = await _cli(server, alice, apw, "send", "-g", room, "anyone?")
        try:
            await owner.plugin["xep_0030"].get_info(jid=JID(room), timeout=10)
            answer = "exists"
        except IqError as exc:  # only item-not-found says "no such room"
            answer = exc.iq["error"]["condition"]
        return res, answer

    res, answer = with_room(server, room, None, action)
    assert res.returncode == 76
    line = one_line(res.stderr)
    assert "no such room" in line and "item-not-found" in line
    assert answer == "item-not-found"  # after the CLI's attempt, still no room


def test_nickname_in_use_is_76_conflict(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    room = new_room(server)

    async def action(owner: Peer, got: list[Any]) -> Any:
        return await _cli(server, alice, apw, "send", "-g", "-N", "owner", room, "clash")

    res = with_room(server, room, {}, action)
    assert res.returncode == 76
    assert "conflict" in one_line(res.stderr)


def test_members_only_room_refuses_a_stranger(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    room = new_room(server)

    async def action(owner: Peer, got: list[Any]) -> Any:
        return await _cli(server, alice, apw, "send", "-g", room, "let me in")

    res = with_room(server, room, {"muc#roomconfig_membersonly": True}, action)
    assert res.returncode == 76
    assert "registration-required" in one_line(res.stderr)


def test_password_protected_room(xmpp_server: Any) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    room = new_room(server)
    secret = f"room-{uuid.uuid4().hex[:8]}"
    config = {"muc#roomconfig_passwordprotectedroom": True,
              "muc#roomconfig_roomsecret": secret}  # fmt: skip

    async def action(owner: Peer, got: list[Any]) -> Any:
        none = await _cli(server, alice, apw, "send", "-g", room, "no password")
        wrong = await _cli(server, alice, apw, "send", "-g", room, "wrong",
                           env={"XMPP_TOOL_ROOM_PASSWORD": "wrong"})  # fmt: skip
        right = await _cli(server, alice, apw, "send", "-g", room, "right",
                           env={"XMPP_TOOL_ROOM_PASSWORD": secret})  # fmt: skip
        await wait_for_messages(got, 1)
        return none, wrong, right, [m["body"] for m in got]

    none, wrong, right, bodies = with_room(server, room, config, action)
    assert none.returncode == 76 and "XMPP_TOOL_ROOM_PASSWORD" in one_line(none.stderr)
    assert wrong.returncode == 76 and "not-authorized" in one_line(wrong.stderr)
    assert right.returncode == 0, right.stderr
    assert bodies == ["right"]
    assert secret not in right.stderr + wrong.stderr


@pytest.mark.parametrize("args", [["-T", "headline"], ["-S", "topic"]])
def test_type_and_subject_do_not_apply_to_rooms(xmpp_server: Any, args: list[str]) -> None:
    server = xmpp_server
    alice, apw = new_user(server, "alice")
    res = xt(server, alice, apw, "send", "-g", *args, new_room(server), "x")
    assert res.returncode == 64
    one_line(res.stderr)
