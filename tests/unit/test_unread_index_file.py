"""unread's archive index on disk: private, atomic, and never a reason to fail."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from xmpp_tool import statefile
from xmpp_tool.unread_walk import Contact, Index

INDEX = Index("p", "l", {"a@x": Contact("l", None, 2, "p", 1)})


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "xmpp-tool" / "unread"


def test_round_trip_private_files(state: Path) -> None:
    statefile.save("Me@Example.org", INDEX)
    assert statefile.load("me@example.org") == INDEX
    (path,) = state.iterdir()
    assert path.name == "me@example.org.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert json.loads(path.read_text())["account"] == "me@example.org"


def test_another_accounts_or_a_broken_file_is_an_empty_index(state: Path) -> None:
    statefile.save("me@example.org", INDEX)
    path = statefile.index_path("me@example.org")
    data = json.loads(path.read_text())
    data["account"] = "someone@example.org"
    path.write_text(json.dumps(data))
    assert statefile.load("me@example.org") == Index()
    path.write_text("{not json")
    assert statefile.load("me@example.org") == Index()
    path.write_bytes(b"\xff\xfe")
    assert statefile.load("me@example.org") == Index()


def test_a_state_dir_that_cannot_be_written_costs_nothing_but_the_index(state: Path) -> None:
    state.parent.mkdir(parents=True)
    state.write_text("a file where the directory should be")
    statefile.save("me@example.org", INDEX)  # no exception
    assert statefile.load("me@example.org") == Index()


def test_relative_xdg_state_home_is_ignored(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "relative/dir")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert statefile.state_dir() == tmp_path / ".local" / "state" / "xmpp-tool" / "unread"
