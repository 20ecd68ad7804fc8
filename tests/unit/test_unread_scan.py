"""How unread decides what is unread (the pure part of the two-pass archive scan)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from xmpp_tool.unread import Archived, Scan

T = datetime(2026, 1, 1, tzinfo=UTC)


def inc(aid: str, contact: str) -> Archived:
    return Archived(aid, "in", contact, T, f"body {aid}")


def out(aid: str, contact: str) -> Archived:
    return Archived(aid, "out", contact, T, "")


def unread_ids(
    archive: list[Archived], pointers: dict[str, str]
) -> tuple[dict[str, int], list[str]]:
    """Run both passes the way unread does: counts, then the listing."""
    scan = Scan(pointers)
    for i, m in enumerate(archive):
        scan.feed(i, m)
    counts = scan.counts()
    start_ord, start_id = scan.start()
    if start_id is not None:
        assert archive[start_ord].aid == start_id
    shown = [m.aid for i, m in enumerate(archive) if i > start_ord and scan.is_unread(i, m)]
    assert len(shown) == sum(counts.values())
    return counts, shown


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


def test_second_pass_starts_at_the_earliest_cutoff() -> None:
    archive = [inc("1", "a@x"), inc("2", "a@x"), inc("3", "b@x"), out("4", "b@x"),
               inc("5", "b@x"), inc("6", "a@x")]
    scan = Scan({"a@x": "2"})
    for i, m in enumerate(archive):
        scan.feed(i, m)
    assert scan.start() == (1, "2")  # after a@x's pointer, before b@x's cut-off at 3
    scan = Scan({})
    for i, m in enumerate(archive):
        scan.feed(i, m)
    assert scan.start() == (-1, None)  # a@x never answered: from the beginning


def test_nothing_unread_needs_no_second_pass() -> None:
    scan = Scan({"a@x": "1"})
    scan.feed(0, inc("1", "a@x"))
    assert scan.counts() == {}
    assert scan.start() == (0, None)


def test_messages_after_the_first_pass_are_not_listed() -> None:
    scan = Scan({})
    scan.feed(0, inc("1", "a@x"))
    assert scan.is_unread(0, inc("1", "a@x"))
    assert not scan.is_unread(1, inc("2", "a@x"))  # arrived between the passes


def test_first_pass_candidates_drop_what_a_later_reply_covers() -> None:
    scan = Scan({})
    a1, a2 = inc("1", "a@x"), inc("3", "a@x")
    scan.feed(0, a1)
    assert scan.may_be_unread(0, a1)
    scan.feed(1, out("2", "a@x"))
    scan.feed(2, a2)
    assert not scan.may_be_unread(0, a1)  # answered since
    assert scan.may_be_unread(2, a2)


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


def test_server_without_mam_or_offline_retrieval_is_76(monkeypatch: Any) -> None:
    import asyncio
    import io
    from types import SimpleNamespace

    import pytest

    from xmpp_tool import unread
    from xmpp_tool.errors import Exit, ToolError
    from xmpp_tool.render import Writer

    async def no_feature(*_a: Any) -> bool:
        return False

    async def start() -> None:
        return None

    monkeypatch.setattr(unread, "has_feature", no_feature)
    fake: Any = SimpleNamespace(
        start=start, client=SimpleNamespace(boundjid=SimpleNamespace(bare="a@x", domain="x")))
    with pytest.raises(ToolError) as info:
        asyncio.run(unread._unread(fake, Writer(io.BytesIO(), as_json=False), False, False, None))
    assert info.value.code == Exit.PROTOCOL
    assert "XEP-0313" in info.value.message and "XEP-0013" in info.value.message
