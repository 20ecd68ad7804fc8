"""unread on real prosody and ejabberd costs what is unread: a reader with a long,
already-read history and a few new messages is answered from the index with a
query count that does not depend on the history; the servers' RSM behaviour for
ids the archive does not hold is what the walk expects."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from test_cli_unread import NO_ROOMS, new_user, send, unread, with_peer, xt

from xmpp_tool import session as xt_session
from xmpp_tool import unread as xt_unread
from xmpp_tool.config import Settings
from xmpp_tool.unread_walk import UnknownId

READ = 1_500  # per contact: 3,000 already read in all


def queries(stderr: str, what: str = "archive") -> tuple[int, int]:
    """(messages read, queries) from unread's -v line about ``what`` (the account's
    archive, or ``room JID``)."""
    found = re.search(rf"{re.escape(what)}: (\d+) message\(s\) read in (\d+) quer", stderr)
    assert found, stderr
    return int(found.group(1)), int(found.group(2))


def test_read_history_costs_nothing(xmpp_server: Any) -> None:
    server = xmpp_server
    reader, rpw = new_user(server, "reader")
    (ann, apw), (ben, bpw) = new_user(server, "ann"), new_user(server, "ben")
    with_peer(server, ann, apw, lambda p: p.seed(reader, READ, prefix="ann"))
    with_peer(server, ben, bpw, lambda p: p.seed(reader, READ, prefix="ben"))
    send(server, reader, rpw, ben, "read them all")  # ben: answered, no pointer
    shown = unread(server, reader, rpw, "-m")  # ann: marked read (pointer)
    assert len(shown) == READ and {m["from"] for m in shown} == {ann}

    send(server, ann, apw, reader, "new 1")
    send(server, ben, bpw, reader, "new 2")
    send(server, ann, apw, reader, "new 3")
    res = xt(server, reader, rpw, "-v", "-J", "unread")
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(m["from"], m["body"]) for m in got] == [
        (ann, "new 1"), (ben, "new 2"), (ann, "new 3")]
    read, asked = queries(res.stderr)
    assert asked <= 2 and read <= 4  # the index's last message and the three new ones

    count = xt(server, reader, rpw, "-v", "-J", "unread", "-c")
    assert json.loads(count.stdout) == {"total": 3, "contacts": {ann: 2, ben: 1}, **NO_ROOMS}
    assert queries(count.stderr)[1] <= 2

    assert len(unread(server, reader, rpw, "-m")) == 3
    assert json.loads(xt(server, reader, rpw, "-J", "unread", "-c").stdout)["total"] == 0
    send(server, ben, bpw, reader, "after the mark")
    assert [m["body"] for m in unread(server, reader, rpw)] == ["after the mark"]


def test_a_pointer_to_an_older_message_on_a_fresh_machine(xmpp_server: Any,
                                                          tmp_path: Any,
                                                          monkeypatch: Any) -> None:
    """Marked read in part (-n), then read from a second machine (no index there):
    the same answer from the full scan and from the index."""
    server = xmpp_server
    reader, rpw = new_user(server, "reader")
    ann, apw = new_user(server, "ann")
    for i in range(5):
        send(server, ann, apw, reader, f"m{i}")
    assert [m["body"] for m in unread(server, reader, rpw, "-m", "-n", "2")] == ["m0", "m1"]
    want = ["m2", "m3", "m4"]
    assert [m["body"] for m in unread(server, reader, rpw)] == want  # this machine's index
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "other-machine"))
    assert [m["body"] for m in unread(server, reader, rpw)] == want  # full scan
    res = xt(server, reader, rpw, "-v", "-J", "unread")  # its index now
    assert [json.loads(line)["body"] for line in res.stdout.splitlines()] == want
    assert queries(res.stderr)[1] <= 3  # scan, ann after the pointer, the pointer's check


@pytest.mark.parametrize("bogus", ["not-an-id", "1700000000000000"])
def test_an_id_the_archive_does_not_hold(xmpp_server: Any, bogus: str) -> None:
    """prosody: item-not-found for any id it does not hold; ejabberd: no error at
    all (its ids are timestamps, compared), so the walk checks a pointer by the
    message just before the first one returned."""
    server = xmpp_server
    reader, rpw = new_user(server, "reader")
    ann, apw = new_user(server, "ann")
    send(server, ann, apw, reader, "hello")
    settings = Settings(jid=reader, host=server.host, port=server.port, cafile=server.cafile)

    async def page(sess: Any) -> Any:
        archive = xt_unread.MamArchive(sess)
        try:
            return await archive.page(with_=ann.lower(), after=bogus)
        except UnknownId:
            return "unknown"

    got = xt_session.run_session(settings, rpw, xt_unread.PLUGINS, page)
    if server.kind == "ejabberd":
        assert [m.body for m in got.items] == ["hello"]
    else:
        assert got == "unknown"

