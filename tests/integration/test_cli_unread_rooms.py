"""unread in group chats on real prosody and ejabberd: rooms come from the account's
bookmarks (XEP-0402, or XEP-0048 private storage), messages from each room's own
archive; pointers are the ones slixmpp's own XEP-0490 client writes and reads; own
messages never count, mentions are flagged; a room that cannot be read is one line;
a long read history costs what a short one costs (counted from unread's -v line).

The room's other members are plain slixmpp clients (lab/slixpeer), never xmpp-tool;
the reader's own room messages are sent with ``xmpp-tool send -g``.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import slixmpp
from slixmpp import JID
from test_cli_unread import new_user, send, with_peer, xt
from test_cli_unread_index import queries

from lab.slixpeer import Peer
from xmpp_tool.unread_rooms import NEWEST

NICK = "rdr"  # the reader's nick in its bookmarks
ARCHIVE_FIELDS = ("muc#roomconfig_enablearchiving", "mam")  # prosody, ejabberd


def make_room(server: Any, *, archive: bool = True, members_only: bool = False,
              members: tuple[str, ...] = ()) -> str:
    """A persistent room (archived or not, open or members-only, with ``members``
    affiliated), created by an owner who then leaves."""
    room = server.room(f"room{uuid.uuid4().hex[:10]}")
    owner, opw = new_user(server, "owner")

    async def create(peer: Peer) -> None:
        await peer.join_room(room, "owner")
        fields: dict[str, Any] = {"muc#roomconfig_persistentroom": True,
                                  "muc#roomconfig_membersonly": members_only}
        fields.update(dict.fromkeys(ARCHIVE_FIELDS, archive))
        known = await peer.configure_room(room, fields)
        assert set(ARCHIVE_FIELDS) & set(known), known
        for member in members:
            await peer.plugin["xep_0045"].set_affiliation(JID(room), "member", jid=JID(member),
                                                          timeout=20)
        await peer.leave_room(room, "owner")

    with_peer(server, owner, opw, create)
    return str(room)


def say(server: Any, jid: str, password: str, room: str, *bodies: str) -> list[str]:
    """``jid`` (a plain slixmpp client, nick ``ann``-like localpart) says ``bodies``
    in ``room``, each reflected by the room before the next."""

    async def speak(peer: Peer) -> list[str]:
        nick = jid.split("@")[0][:3]
        await peer.join_room(room, nick)
        for body in bodies:
            await peer.send_groupchat(room, body)
        await peer.leave_room(room, nick)
        return [sid for sid, _nick, body in await peer.room_archive(room) if body in bodies]

    ids: list[str] = with_peer(server, jid, password, speak)
    return ids


def say_as_reader(server: Any, reader: str, rpw: str, room: str, body: str) -> None:
    res = xt(server, reader, rpw, "send", "-g", "-N", NICK, "-m", body, room)
    assert res.returncode == 0, res.stderr


def listed(server: Any, reader: str, rpw: str, *args: str) -> list[dict[str, Any]]:
    res = xt(server, reader, rpw, "-J", "unread", *args)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    return [json.loads(line) for line in res.stdout.splitlines()]


def cost(stderr: str, room: str) -> tuple[int, int]:
    """(messages read, queries) of one room, from unread's -v line."""
    got: tuple[int, int] = queries(stderr, f"room {room}")
    return got


def test_room_messages_pointers_own_and_mentions(xmpp_server: Any) -> None:
    """A members-only room of which the reader and ann are members."""
    server = xmpp_server
    reader, rpw = new_user(server, "reader")
    ann, apw = new_user(server, "ann")
    room = make_room(server, members_only=True, members=(reader, ann))
    with_peer(server, reader, rpw, lambda p: p.bookmark(room, NICK))

    say(server, ann, apw, room, "before anything")
    say_as_reader(server, reader, rpw, room, "my reply")
    ids = say(server, ann, apw, room, "hey rdr, look", "plain")
    send(server, ann, apw, reader, "a chat message")

    # no pointer: after the reader's own last message in the room
    got = listed(server, reader, rpw, "-g")
    assert [(m["from"], m["room"], m["nick"], m["body"], m["mention"]) for m in got] == [
        (f"{room}/ann", room, "ann", "hey rdr, look", True),
        (f"{room}/ann", room, "ann", "plain", False),
    ]
    assert [m["id"] for m in got] == ids
    # chats first, then the rooms; -G: only chats; -r: only that room
    assert [m["body"] for m in listed(server, reader, rpw)] == [
        "a chat message", "hey rdr, look", "plain"]
    assert [m["body"] for m in listed(server, reader, rpw, "-G")] == ["a chat message"]
    assert [m["body"] for m in listed(server, reader, rpw, "-r", room)] == [
        "hey rdr, look", "plain"]
    count = xt(server, reader, rpw, "-J", "unread", "-c")
    assert json.loads(count.stdout) == {"total": 3, "contacts": {ann: 1}, "rooms": {room: 2},
                                        "mentions": {room: 1}}

    # a pointer written by slixmpp's own XEP-0490 client (no 'by'), then an own
    # message after it: the pointer decides, the own message is never unread
    with_peer(server, reader, rpw, lambda p: _slixmpp_pointer(server, p, room, ids[0]))
    say_as_reader(server, reader, rpw, room, "own, after the pointer")
    say(server, ann, apw, room, "four")
    assert [m["body"] for m in listed(server, reader, rpw, "-g")] == ["plain", "four"]

    # -m moves the room's pointer; slixmpp's client reads it back
    shown = listed(server, reader, rpw, "-g", "-m")
    pointers = with_peer(server, reader, rpw, lambda p: p.mds_pointers())
    assert pointers[room] == shown[-1]["id"]
    assert listed(server, reader, rpw, "-g") == []
    assert [m["body"] for m in listed(server, reader, rpw, "-G")] == ["a chat message"]


async def _slixmpp_pointer(server: Any, peer: Peer, chat: str, stanza_id: str) -> None:
    """As slixmpp's xep_0490.flag_chat does it; ejabberd refuses its publish-options
    (FIELD-NOTES), so there the same payload with the options ejabberd takes."""
    try:
        await peer.mds_publish(chat, stanza_id)
    except slixmpp.exceptions.IqError as exc:
        if server.kind != "ejabberd":
            raise
        assert exc.condition == "resource-constraint"
        await peer.mds_publish_minimal(chat, stanza_id)


def test_a_room_that_cannot_be_read_is_one_line_and_the_rest_is_listed(
        xmpp_server: Any) -> None:
    """Unreadable: a members-only room the reader is not a member of, a room that
    does not exist, and (prosody) a room with archiving off.  ejabberd 23.01 keeps
    archiving a room whose ``mam`` option is off and serves that archive (while its
    disco#info no longer announces MAM): there the room is listed like any other."""
    server = xmpp_server
    archived, unarchived = make_room(server), make_room(server, archive=False)
    closed = make_room(server, members_only=True)
    gone = server.room(f"gone{uuid.uuid4().hex[:8]}")
    reader, rpw = new_user(server, "reader")
    ann, apw = new_user(server, "ann")

    async def bookmarks(peer: Peer) -> None:
        for room in (archived, unarchived, closed, gone):
            await peer.bookmark(room, NICK)

    with_peer(server, reader, rpw, bookmarks)
    say(server, ann, apw, archived, "kept")
    say(server, ann, apw, unarchived, "not kept")
    res = xt(server, reader, rpw, "-J", "unread")
    assert res.returncode == 76, res.stderr
    kept = ["kept"] if server.kind == "prosody" else sorted(
        ["kept", "not kept"], key=lambda body: archived if body == "kept" else unarchived)
    assert [json.loads(line)["body"] for line in res.stdout.splitlines()] == kept, res.stderr
    lines = res.stderr.splitlines()
    failed = {closed, gone} | ({unarchived} if server.kind == "prosody" else set())
    assert len(lines) == len(failed), lines
    assert {line.split(": ")[1] for line in lines} == failed
    assert any("no such room" in line for line in lines if gone in line)


def test_xep0048_bookmarks_when_there_are_no_others(xmpp_server: Any) -> None:
    server = xmpp_server
    room = make_room(server)
    reader, rpw = new_user(server, "reader")
    ann, apw = new_user(server, "ann")
    with_peer(server, reader, rpw, lambda p: p.legacy_bookmarks({room: NICK}))
    say(server, ann, apw, room, "hello rdr")
    got = listed(server, reader, rpw, "-g")
    assert [(m["room"], m["body"], m["mention"]) for m in got] == [(room, "hello rdr", True)]


READ = 1_000


def test_a_first_run_reads_a_room_from_its_end_to_its_pointer(xmpp_server: Any) -> None:
    """Another machine (no index) and a pointer set by another client 3 messages from
    the end of 1,000: the run reads the room's last page, not its history."""
    server = xmpp_server
    room = make_room(server)
    reader, rpw = new_user(server, "reader")
    ann, apw = new_user(server, "ann")
    with_peer(server, reader, rpw, lambda p: p.bookmark(room, NICK))
    ids = say(server, ann, apw, room, *(f"m{i}" for i in range(READ)))
    with_peer(server, reader, rpw, lambda p: _slixmpp_pointer(server, p, room, ids[-4]))
    res = xt(server, reader, rpw, "-v", "-J", "unread", "-g")
    assert res.returncode == 0, res.stderr
    assert [json.loads(line)["body"] for line in res.stdout.splitlines()] == [
        f"m{i}" for i in range(READ - 3, READ)]
    read, asked = cost(res.stderr, room)
    assert read <= 50 + 1 + 3 and asked <= 3, res.stderr  # a page back, the scan, the 3


def test_a_thousand_read_messages_cost_what_one_does(xmpp_server: Any) -> None:
    """Two rooms alike but for their read history (1,000 messages against 1), each
    marked read, then 3 new in each: the same queries and messages per room; and
    no more than a room holding only 3 new messages (never read: its newest are
    asked for, one more query)."""
    server = xmpp_server
    long_room, short_room, fresh_room = make_room(server), make_room(server), make_room(server)
    reader, rpw = new_user(server, "reader")
    ann, apw = new_user(server, "ann")

    async def bookmarks(peer: Peer) -> None:
        for room in (long_room, short_room):
            await peer.bookmark(room, NICK)

    with_peer(server, reader, rpw, bookmarks)
    say(server, ann, apw, long_room, *(f"old {i}" for i in range(READ)))
    say(server, ann, apw, short_room, "old 0")
    # never spoke, no pointer: the newest NEWEST of each room, then marked read
    assert len(listed(server, reader, rpw, "-g", "-m")) == NEWEST + 1
    with_peer(server, reader, rpw, lambda p: p.bookmark(fresh_room, NICK))
    for room in (long_room, short_room, fresh_room):
        say(server, ann, apw, room, "new 1", "new 2", "new 3")
    res = xt(server, reader, rpw, "-v", "-J", "unread", "-g")
    assert res.returncode == 0, res.stderr
    bodies = [json.loads(line)["body"] for line in res.stdout.splitlines()]
    assert bodies == ["new 1", "new 2", "new 3"] * 3
    assert cost(res.stderr, long_room) == cost(res.stderr, short_room) == (4, 1)
    fresh = cost(res.stderr, fresh_room)  # read from its end, the scan, its newest
    assert fresh[0] >= 4 and fresh[1] >= 1

