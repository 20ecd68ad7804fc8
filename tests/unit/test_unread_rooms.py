"""unread in a room: the same walk over the room's own archive, the room its only
"contact"; without a pointer or an own message only the newest NEWEST are unread;
own nick and real JID are never unread; mentions; bookmarks and rooms in the index."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from archive_model import FakeArchive, reference
from hypothesis import given, settings
from hypothesis import strategies as st
from test_unread_walk import build, roundtrip

from xmpp_tool import statefile
from xmpp_tool.unread_rooms import Room, extract_room, mentions
from xmpp_tool.unread_walk import Archived, Found, Index, find_unread

ROOM = "ops@conference.example.org"
ME = "me@example.org"


def run(archive: FakeArchive, index: Index, pointer: str | None,
        newest: int) -> tuple[Index, Found]:
    pointers = {ROOM: pointer} if pointer else {}
    return asyncio.run(find_unread(archive, index, pointers, count_only=False, newest=newest,
                                   conversation=ROOM))


def expected(msgs: list[Archived], pointer: str | None, newest: int) -> list[str]:
    """The definition: after a pointer naming a message of someone else; else after
    our last message; else the newest ``newest`` messages of others."""
    shown: list[str] = reference(msgs, {ROOM: pointer} if pointer else {})[1]
    valid = any(m.aid == pointer and m.kind == "in" for m in msgs)
    if not valid and not any(m.kind == "out" for m in msgs):
        return shown[-newest:] if newest else []
    return shown


@st.composite
def room_cases(draw: st.DrawFn) -> tuple[list[Archived], str | None, str, int, int]:
    flavour = draw(st.sampled_from(["prosody", "ejabberd"]))
    events = draw(st.lists(st.tuples(st.sampled_from(["in", "in", "in", "out", "skip"]),
                                     st.just(ROOM)), max_size=40))
    msgs, _ = build(events, flavour)
    choice = draw(st.sampled_from(["none", "in", "any", "missing"]))
    pointer = None
    others = [m.aid for m in msgs if m.kind == "in"]
    if choice == "in" and others:
        pointer = draw(st.sampled_from(others))
    elif choice == "any" and msgs:
        pointer = draw(st.sampled_from([m.aid for m in msgs]))
    elif choice == "missing":
        pointer = "999" if flavour == "ejabberd" else "not-in-archive"
    split, newest = draw(st.integers(0, len(msgs))), draw(st.sampled_from([1, 3, 50]))
    return msgs, pointer, flavour, split, newest


@settings(max_examples=500, deadline=None)
@given(room_cases(), room_cases())
def test_same_answer_as_the_definition_with_and_without_an_index(
        case: tuple[list[Archived], str | None, str, int, int],
        other: tuple[list[Archived], str | None, str, int, int]) -> None:
    msgs, pointer, flavour, split, newest = case
    cap = {1: 2, 3: 5, 50: None}[newest]  # pages of 2, 5 or the server's own
    _, found = run(FakeArchive(msgs, flavour, cap=cap), Index(), pointer, newest)
    assert [m.aid for m in found.messages] == expected(msgs, pointer, newest)
    assert sum(found.counts.values()) == len(found.messages)
    # an earlier run saw part of the archive, with the pointer of then (the same, none
    # or another): a partial index must give the same answers as a whole one
    then = other[1] if other[2] == flavour else None
    for earlier in (pointer, None, then):
        index, _ = run(FakeArchive(msgs[:split], flavour, cap=cap), Index(), earlier, newest)
        _, found = run(FakeArchive(msgs, flavour, cap=cap), roundtrip(index), pointer, newest)
        assert [m.aid for m in found.messages] == expected(msgs, pointer, newest)


def test_a_first_run_with_a_pointer_reads_from_the_end_only_to_it() -> None:
    """A room of 5,000 messages, its pointer 120 from the end: the first run on a
    machine reads the last pages, not the room's history."""
    msgs, _ = build([("in", ROOM)] * 5_000, "prosody")
    archive = FakeArchive(msgs, cap=50)
    index, found = run(archive, Index(), msgs[-121].aid, 50)
    assert [m.aid for m in found.messages] == [m.aid for m in msgs[-120:]]
    assert index.partial
    assert archive.messages <= 150 + 1 + 120  # back to the pointer, the scan, the unread
    archive = FakeArchive(msgs, cap=50)
    _, found = run(archive, roundtrip(index), msgs[-1].aid, 50)  # then marked read
    assert found.messages == [] and archive.queries == 1


def test_a_partial_index_and_a_pointer_gone_means_the_whole_archive() -> None:
    """The cut-off moves to our last message, which the part read does not hold."""
    msgs, _ = build([("in", ROOM), ("out", ROOM)] + [("in", ROOM)] * 300, "prosody")
    index, _ = run(FakeArchive(msgs), Index(), msgs[-3].aid, 50)
    assert index.partial
    _, found = run(FakeArchive(msgs), roundtrip(index), None, 50)
    assert [m.aid for m in found.messages] == [m.aid for m in msgs[2:]]


def test_never_spoke_no_pointer_costs_one_page_from_the_end() -> None:
    msgs, _ = build([("in", ROOM)] * 5_000, "prosody")
    index, _ = run(FakeArchive(msgs, cap=250), Index(), None, 50)
    archive = FakeArchive(msgs, cap=250)
    _, found = run(archive, roundtrip(index), None, 50)
    assert [m.aid for m in found.messages] == [m.aid for m in msgs[-50:]]
    assert archive.log == [(None, index.prev, None), (ROOM, None, "")]  # scan, last page
    assert archive.messages == 1 + 50


# ------------------------------------------------------------------ one message


def result(body: str, nick: str, *, real: str = "", refs: str = "",
           mtype: str = "groupchat") -> Any:
    item = (f"<x xmlns='http://jabber.org/protocol/muc#user'><item jid='{real}'/></x>"
            if real else "")
    el = ET.fromstring(  # noqa: S314 - a constant written here
        "<result xmlns='urn:xmpp:mam:2' id='r-1'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<delay xmlns='urn:xmpp:delay' stamp='2026-01-02T03:04:05Z'/>"
        f"<message xmlns='jabber:client' type='{mtype}' from='{ROOM}/{nick}'>"
        f"<body>{body}</body>{item}{refs}</message></forwarded></result>")

    class Result:
        xml = el

        def __getitem__(self, key: str) -> Any:
            assert key == "mam_result"
            return self

    return Result()


def test_a_rooms_message_others_own_and_mentions() -> None:
    room = Room(ROOM, "Me")
    got = extract_room(result("hello all", "bob"), room, ME)
    assert (got.aid, got.kind, got.contact, got.nick, got.body, got.mention) == (
        "r-1", "in", ROOM, "bob", "hello all", False)
    assert extract_room(result("hi", "Me"), room, ME).kind == "out"  # our nick
    assert extract_room(result("hi", "other", real=f"{ME}/laptop"), room, ME).kind == "out"
    assert extract_room(result("hi", "bob", mtype="chat"), room, ME).kind == "skip"
    assert extract_room(result("", "bob"), room, ME).kind == "skip"  # a subject, a marker
    assert extract_room(result("me: look", "bob"), room, ME).mention
    ref = (f"<reference xmlns='urn:xmpp:reference:0' type='mention' uri='xmpp:{ROOM}/Me'"
           " begin='0' end='2'/>")
    assert extract_room(result("hey", "bob", refs=ref), room, ME).mention


@pytest.mark.parametrize(("body", "yes"), [
    ("Me: disk full", True), ("ping me", True), ("@me?", True), ("ME!", True),
    ("meeting at 3", False), ("home", False), ("mail me@example.org now", True),
    ("mail me@example.org.uk", True),  # (a word boundary, not a domain check)
])
def test_mentions_are_whole_words(body: str, yes: bool) -> None:
    assert mentions(body, "me", ME) is yes


# ------------------------------------------------------------------ the index


def test_the_rooms_indexes_live_beside_the_accounts(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    chats = Index("p", "l", {})
    rooms = {ROOM: Index(None, "r9", {})}
    statefile.save(ME, chats, rooms)
    assert statefile.load_all(ME) == (chats, rooms)
    assert statefile.load(ME) == chats
    data = json.loads(statefile.index_path(ME).read_text())
    data["rooms"][ROOM] = "garbage"
    statefile.index_path(ME).write_text(json.dumps(data))
    assert statefile.load_all(ME) == (chats, {ROOM: Index()})


def test_the_help_and_the_docs_say_the_same_newest() -> None:
    from xmpp_tool.cli import typer_app
    from xmpp_tool.unread_rooms import NEWEST

    assert f"its newest {NEWEST}" in " ".join((typer_app.unread_command.__doc__ or "").split())
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    assert f"**newest {NEWEST}**" in docs
