"""unread reads only what can be unread, and still answers exactly what a full scan
of the archive answers (tests/unit/archive_model.py: the reference and a fake
MAM archive with prosody's and ejabberd's RSM behaviour)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from archive_model import FakeArchive, reference
from hypothesis import given, settings
from hypothesis import strategies as st

from xmpp_tool.unread_walk import Archived, Found, Index, classify_raw, find_unread, marks

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CONTACTS = ("a@x", "b@x", "c@x")


def build(events: list[tuple[str, str]], flavour: str,
          archive: int = 0) -> tuple[list[Archived], list[str]]:
    """Archive messages from (kind, contact) events; distinct increasing stamps.
    ``archive`` tells archives apart (their ids never coincide)."""
    msgs: list[Archived] = []
    for i, (kind, contact) in enumerate(events):
        aid = (str(1_000 + 2 * i + archive) if flavour == "ejabberd"
               else f"id{archive}-{(i * 7919) % 100_003}")
        stamp = (T0 + timedelta(seconds=i)).isoformat()
        msgs.append(Archived(aid, kind, "" if kind == "skip" else contact, stamp,
                             f"body {i}" if kind == "in" else ""))
    return msgs, [c for _, c in events]


def run(archive: FakeArchive, index: Index, pointers: dict[str, str], count_only: bool,
        keep: int = 20_000) -> tuple[Index, Found]:
    return asyncio.run(find_unread(archive, index, pointers, count_only=count_only, keep=keep))


def roundtrip(index: Index) -> Index:
    return Index.from_json(json.loads(json.dumps(index.to_json())))


events_st = st.lists(
    st.tuples(st.sampled_from(["in", "in", "in", "out", "skip"]), st.sampled_from(CONTACTS)),
    max_size=40,
)


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[Archived], list[str], dict[str, str], str, int, int]:
    flavour = draw(st.sampled_from(["prosody", "ejabberd"]))
    events = draw(events_st)
    msgs, peers = build(events, flavour)
    pointers: dict[str, str] = {}
    for contact in CONTACTS:
        own = [m.aid for m in msgs if m.kind == "in" and m.contact == contact]
        choice = draw(st.sampled_from(["none", "own", "any", "missing"]))
        if choice == "own" and own:
            pointers[contact] = draw(st.sampled_from(own))
        elif choice == "any" and msgs:
            pointers[contact] = draw(st.sampled_from([m.aid for m in msgs]))
        elif choice == "missing":
            pointers[contact] = "999" if flavour == "ejabberd" else "not-in-archive"
    split = draw(st.integers(0, len(msgs)))  # the earlier run saw the first `split`
    keep = draw(st.sampled_from([2, 5, 20_000]))
    return msgs, peers, pointers, flavour, split, keep


Case = tuple[list[Archived], list[str], dict[str, str], str, int, int]


def check(found: Found, msgs: list[Archived], pointers: dict[str, str],
          count_only: bool) -> None:
    counts, shown = reference(msgs, pointers)
    assert found.counts == counts
    if not count_only:
        assert [m.aid for m in found.messages] == shown
        by_id = {m.aid: m for m in msgs}
        assert marks(found.messages) == marks([by_id[a] for a in shown])


@settings(max_examples=400, deadline=None)
@given(cases(), st.booleans(), st.sampled_from(["none", "same", "shuffled"]))
def test_same_answer_as_a_full_scan(case: Case, count_only: bool, earlier: str) -> None:
    msgs, peers, pointers, flavour, split, keep = case
    # first run ever: no index
    index, found = run(FakeArchive(msgs, flavour, peers=peers), Index(), pointers,
                       count_only, keep)
    check(found, msgs, pointers, count_only)
    # an earlier run saw part of the archive; more arrived since
    # (with the pointers of then: none, the same, or others' — the index remembers
    # pointers it found valid)
    then = {"none": {}, "same": pointers,
            "shuffled": dict(zip(CONTACTS, [*pointers.values(), "x", "y", "z"], strict=False))}
    index, _ = run(FakeArchive(msgs[:split], flavour, peers=peers[:split]), Index(),
                   then[earlier], count_only, keep)
    _, found = run(FakeArchive(msgs, flavour, peers=peers), roundtrip(index), pointers,
                   count_only, keep)
    check(found, msgs, pointers, count_only)


@settings(max_examples=100, deadline=None)
@given(cases(), events_st)
def test_an_index_of_another_archive_is_noticed(case: Case,
                                                other: list[tuple[str, str]]) -> None:
    msgs, peers, pointers, flavour, _, keep = case
    stale_msgs, stale_peers = build(other, flavour, archive=1)
    for m in stale_msgs:  # same id scheme, another archive (e.g. a lab built anew)
        m.body = "stale"
    index, _ = run(FakeArchive(stale_msgs, flavour, peers=stale_peers), Index(), {}, True)
    _, found = run(FakeArchive(msgs, flavour, peers=peers), roundtrip(index), pointers,
                   False, keep)
    check(found, msgs, pointers, False)


def history(n_read: int) -> list[tuple[str, str]]:
    """a@x wrote n_read/2 (read: pointer), b@x wrote n_read/2 (answered)."""
    return [("in", "a@x")] * (n_read // 2) + [("in", "b@x")] * (n_read // 2) + [("out", "b@x")]


def test_queries_do_not_grow_with_read_history() -> None:
    """3,000 read + 3 new costs the same queries as 100 read + 3 new."""
    seen = {}
    for n in (100, 3_000):
        msgs, peers = build([*history(n), ("in", "a@x"), ("in", "b@x"), ("in", "a@x")],
                            "prosody")
        pointer = {"a@x": [m.aid for m in msgs[:n] if m.contact == "a@x"][-1]}
        base = FakeArchive(msgs[: n + 1], peers=peers[: n + 1])
        index, _ = run(base, Index(), pointer, False)  # the run that marked them read
        archive = FakeArchive(msgs, peers=peers)
        _, found = run(archive, roundtrip(index), pointer, False)
        assert [m.body for m in found.messages] == [f"body {n + 1}", f"body {n + 2}",
                                                    f"body {n + 3}"]
        seen[n] = (archive.queries, archive.messages)
    assert seen[100] == seen[3_000]
    assert seen[3_000][0] <= 2 and seen[3_000][1] <= 4


def test_a_pointer_older_than_the_index_costs_its_unread_messages_only() -> None:
    """Another client marked only part of a@x's messages read: ask a@x for what
    follows its pointer (and check the pointer with one message before)."""
    events = [("in", "a@x")] * 500 + [("in", "b@x")] * 1_000
    msgs, peers = build(events, "ejabberd")
    index, _ = run(FakeArchive(msgs, "ejabberd", peers=peers), Index(), {}, True)
    pointer = {"a@x": msgs[489].aid, "b@x": msgs[-1].aid}
    archive = FakeArchive(msgs, "ejabberd", peers=peers)
    _, found = run(archive, roundtrip(index), pointer, False)
    assert [m.aid for m in found.messages] == [m.aid for m in msgs[490:500]]
    assert archive.messages <= 10 + 1 + 1  # scan (nothing new), a@x's ten, the check
    assert [w for w, _, _ in archive.log if w] == ["a@x", "a@x"]


def test_ten_thousand_unread_are_read_once() -> None:
    msgs, peers = build([("in", "a@x")] * 10_000, "prosody")
    archive = FakeArchive(msgs, peers=peers, cap=250)
    index, found = run(archive, Index(), {}, False)
    assert len(found.messages) == 10_000 and archive.messages == 10_000
    archive = FakeArchive(msgs, peers=peers, cap=250)
    _, found = run(archive, roundtrip(index), {}, False)  # again, with the index
    # (+1: the index's last message, read again to see the archive is the same)
    assert len(found.messages) == 10_000 and archive.messages == 10_001


def test_counting_needs_no_query_for_contacts_without_a_pointer() -> None:
    msgs, peers = build([("in", "a@x")] * 300 + [("out", "b@x"), ("in", "b@x")], "prosody")
    index, _ = run(FakeArchive(msgs, peers=peers), Index(), {}, True)
    archive = FakeArchive(msgs, peers=peers)
    _, found = run(archive, roundtrip(index), {}, True)
    assert found.counts == {"a@x": 300, "b@x": 1}
    assert archive.queries == 1 and archive.messages == 1  # the scan's check only


def test_index_from_garbage_is_empty() -> None:
    garbage: list[object] = [None, [], {"version": 99}, {"version": 1},
                             {"version": 1, "prev": 3, "last": None, "contacts": {}}]
    for data in garbage:
        assert Index.from_json(data) == Index()


def test_a_cut_off_that_left_the_archive_means_reading_it_again() -> None:
    """prosody forgets expired messages: a query after one is item-not-found."""
    msgs, peers = build([("in", "a@x"), ("out", "a@x")] + [("in", "a@x")] * 3
                        + [("in", "b@x")], "prosody")
    index, _ = run(FakeArchive(msgs, peers=peers), Index(), {}, True)
    rest, rest_peers = msgs[2:], peers[2:]  # the first two expired
    archive = FakeArchive(rest, peers=rest_peers)
    _, found = run(archive, roundtrip(index), {}, False)
    check(found, rest, {}, False)


def test_a_message_of_ours_without_a_body_is_not_a_read_marker() -> None:
    # An OMEMO key exchange that a client sends by itself after decrypting (or a chat
    # state, a marker) is archived as ours, with no body: it is not something the
    # user wrote, so the contact's messages before it stay unread.
    me, bob = "me@example.org", "bob@example.org"
    assert classify_raw("chat", me, bob, True, me) == ("out", bob)
    assert classify_raw("chat", me, bob, False, me) == ("skip", "")
    assert classify_raw("chat", bob, me, True, me) == ("in", bob)
