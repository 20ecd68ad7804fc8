"""Output formats: text (local time, sender, body), JSON lines, counts."""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from xmpp_tool.render import UnreadMessage, Writer, iso_utc, json_line, text_line

MSG = UnreadMessage(
    id="abc-123",
    sender="alice@example.org",
    timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    body="héllo\nsecond line",
)


@pytest.fixture
def berlin() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


def test_text_uses_local_time_sender_and_body(berlin: None) -> None:
    assert text_line(MSG) == "2026-01-02 04:04:05 alice@example.org: héllo\n\tsecond line"


def test_text_neutralises_terminal_escapes() -> None:
    evil = UnreadMessage("i", "mallory@example.org", MSG.timestamp, "\x1b[2Jgone\x07")
    line = text_line(evil)
    assert "\x1b" not in line and "\x07" not in line
    assert "gone" in line


def test_json_line_fields_and_utc() -> None:
    obj = json.loads(json_line(MSG))
    assert obj == {
        "id": "abc-123",
        "from": "alice@example.org",
        "timestamp": "2026-01-02T03:04:05Z",
        "body": "héllo\nsecond line",
        "room": None,
        "nick": None,
        "mention": False,
        "encryption": None,
        "decrypted": None,
    }


ROOM_MSG = UnreadMessage("r-1", "ops@conference.example.org", MSG.timestamp, "alice: disk full",
                         nick="bob", mention=True)


def test_a_rooms_message_names_the_occupant_and_the_mention(berlin: None) -> None:
    assert text_line(ROOM_MSG) == (
        "2026-01-02 04:04:05 ops@conference.example.org/bob (mention): alice: disk full")
    assert json.loads(json_line(ROOM_MSG)) == {
        "id": "r-1", "from": "ops@conference.example.org/bob",
        "timestamp": "2026-01-02T03:04:05Z", "body": "alice: disk full",
        "room": "ops@conference.example.org", "nick": "bob", "mention": True,
        "encryption": None, "decrypted": None}
    plain = UnreadMessage("r-2", "ops@conference.example.org", MSG.timestamp, "hi", nick="bob")
    assert text_line(plain) == "2026-01-02 04:04:05 ops@conference.example.org/bob: hi"


def test_iso_utc_converts_offsets_and_keeps_fractions() -> None:
    ts = datetime(2026, 1, 2, 5, 4, 5, 250000, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(ts) == "2026-01-02T03:04:05.250000Z"
    assert iso_utc(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05Z"  # naive = UTC


def test_writer_lines_are_utf8_and_counted() -> None:
    buf = io.BytesIO()
    w = Writer(buf, as_json=True)
    w.message(MSG)
    w.message(MSG)
    lines = buf.getvalue().decode("utf-8").splitlines()
    assert len(lines) == 2 and w.written == 2
    assert json.loads(lines[0])["body"] == "héllo\nsecond line"


def test_counts_text_is_total_json_is_per_contact_and_room() -> None:
    per = {"b@example.org": 2, "a@example.org": 3}
    rooms = {"ops@conference.example.org": 4}
    buf = io.BytesIO()
    Writer(buf, as_json=False).count(per, rooms, {"ops@conference.example.org": 1})
    assert buf.getvalue() == b"9\n"
    buf = io.BytesIO()
    Writer(buf, as_json=True).count(per, rooms, {"ops@conference.example.org": 1})
    assert json.loads(buf.getvalue()) == {
        "total": 9, "contacts": {"a@example.org": 3, "b@example.org": 2},
        "rooms": {"ops@conference.example.org": 4},
        "mentions": {"ops@conference.example.org": 1}}
    buf = io.BytesIO()
    Writer(buf, as_json=True).count({})
    assert json.loads(buf.getvalue()) == {"total": 0, "contacts": {}, "rooms": {},
                                          "mentions": {}}


def test_an_omemo_message_says_so_and_one_not_decrypted_has_no_body(berlin: None) -> None:
    opened = replace(MSG, body="the secret", encrypted=True)
    assert text_line(opened) == "2026-01-02 04:04:05 alice@example.org (OMEMO): the secret"
    assert json.loads(json_line(opened))["encryption"] == "omemo"
    assert json.loads(json_line(opened))["decrypted"] is True
    assert "undecrypted" not in json.loads(json_line(opened))
    sealed = replace(MSG, body="", encrypted=True, undecrypted="not encrypted for this device")
    assert text_line(sealed) == ("2026-01-02 04:04:05 alice@example.org: "
                                 "[OMEMO, not decrypted: not encrypted for this device]")
    obj = json.loads(json_line(sealed))
    assert (obj["body"], obj["decrypted"], obj["undecrypted"]) == (
        None, False, "not encrypted for this device")
