"""How unread decides what is unread: worked examples through the archive walk
(a fake archive, tests/unit/archive_model.py), checked against the reference."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from archive_model import FakeArchive, reference

from xmpp_tool.unread_walk import Archived, Index, find_unread

T = datetime(2026, 1, 1, tzinfo=UTC)


def inc(aid: str, contact: str) -> Archived:
    return Archived(aid, "in", contact, T, f"body {aid}")


def out(aid: str, contact: str) -> Archived:
    return Archived(aid, "out", contact, T, "")


def unread_ids(
    archive: list[Archived], pointers: dict[str, str]
) -> tuple[dict[str, int], list[str]]:
    """Counts and the listing, from the walk; the reference must agree."""
    _, found = asyncio.run(find_unread(FakeArchive(archive), Index(), pointers,
                                       count_only=False))
    got = (found.counts, [m.aid for m in found.messages])
    assert got == reference(archive, pointers)
    return got


def test_everything_unread_without_pointer_or_reply() -> None:
    archive = [inc(str(i), "a@x") for i in range(5)]
    assert unread_ids(archive, {}) == ({"a@x": 5}, ["0", "1", "2", "3", "4"])


def test_pointer_marks_up_to_and_including_its_message() -> None:
    archive = [inc("1", "a@x"), inc("2", "a@x"), inc("3", "a@x")]
    assert unread_ids(archive, {"a@x": "2"}) == ({"a@x": 1}, ["3"])
    assert unread_ids(archive, {"a@x": "3"}) == ({}, [])


def test_without_pointer_own_last_message_is_the_cutoff() -> None:
    archive = [inc("1", "a@x"), out("2", "a@x"), inc("3", "a@x"), inc("4", "a@x")]
    assert unread_ids(archive, {}) == ({"a@x": 2}, ["3", "4"])
    archive.append(out("5", "a@x"))
    assert unread_ids(archive, {}) == ({}, [])


def test_pointer_wins_over_own_messages() -> None:
    archive = [inc("1", "a@x"), inc("2", "a@x"), out("3", "a@x"), inc("4", "a@x")]
    assert unread_ids(archive, {"a@x": "1"}) == ({"a@x": 2}, ["2", "4"])


def test_unknown_pointer_falls_back_to_own_last_message() -> None:
    archive = [inc("1", "a@x"), out("2", "a@x"), inc("3", "a@x")]
    assert unread_ids(archive, {"a@x": "expired"}) == ({"a@x": 1}, ["3"])


def test_contacts_are_independent_and_output_is_oldest_first() -> None:
    archive = [
        inc("1", "a@x"), inc("2", "b@x"), out("3", "a@x"), inc("4", "b@x"),
        inc("5", "a@x"), inc("6", "c@x"), Archived("7", "skip", "", T, ""),
    ]
    counts, shown = unread_ids(archive, {"b@x": "2"})
    assert counts == {"a@x": 1, "b@x": 1, "c@x": 1}
    assert shown == ["4", "5", "6"]


def test_extract_reads_a_mam_result() -> None:
    import xml.etree.ElementTree as ET

    from xmpp_tool.unread import extract

    def result(sender: str, to: str) -> ET.Element:
        return ET.fromstring(  # noqa: S314 - a constant written here
            "<result xmlns='urn:xmpp:mam:2' id='sid-1'>"
            "<forwarded xmlns='urn:xmpp:forward:0'>"
            "<delay xmlns='urn:xmpp:delay' stamp='2026-01-02T03:04:05.5Z'/>"
            f"<message xmlns='jabber:client' type='chat' from='{sender}' to='{to}'>"
            "<body>hi</body></message></forwarded></result>"
        )

    class Result:
        def __init__(self, el: ET.Element) -> None:
            self.xml = el

        def __getitem__(self, key: str) -> Result:
            assert key == "mam_result"
            return self

    got = extract(Result(result("Alice@Example.org/phone", "me@example.org/x")),
                  "me@example.org")
    assert (got.aid, got.kind, got.contact, got.body) == ("sid-1", "in", "alice@example.org", "hi")
    assert got.timestamp == datetime(2026, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)
    mine = extract(Result(result("me@example.org/x", "alice@example.org")), "me@example.org")
    assert (mine.kind, mine.contact, mine.body) == ("out", "alice@example.org", "")


def test_server_without_mam_or_offline_retrieval_is_76() -> None:
    import asyncio
    import io
    from types import SimpleNamespace

    import pytest

    from xmpp_tool import unread
    from xmpp_tool.errors import Exit, ToolError
    from xmpp_tool.render import Writer
    from xmpp_tool.request import CliOptions, UnreadRequest

    async def no_features(*_a: Any) -> set[str]:
        return set()

    fake: Any = SimpleNamespace(
        disco_features=no_features,
        client=SimpleNamespace(boundjid=SimpleNamespace(bare="a@x", domain="x")))
    with pytest.raises(ToolError) as info:
        asyncio.run(unread._list_unread(fake, Writer(io.BytesIO(), as_json=False),
                                        UnreadRequest(CliOptions(), False, False, None)))
    assert info.value.code == Exit.PROTOCOL
    assert "XEP-0313" in info.value.message and "XEP-0013" in info.value.message
