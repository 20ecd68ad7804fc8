"""The OMEMO device's file: private, replaced atomically, never overwritten when it
cannot be read (78, one line, before any network), and what it keeps of decrypted
messages bounded."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from xmpp_tool import omemo_state
from xmpp_tool.errors import Exit, ToolError
from xmpp_tool.omemo_state import OmemoState, state_path

ACCOUNT = "Me@Example.org"


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    return tmp_path / "state" / "xmpp-tool" / "omemo"


def saved() -> OmemoState:
    state = OmemoState.load(ACCOUNT)
    state.put("/own_device_id", 1234)
    state.remember("aid-1", "hello", 99)
    state.save()
    return state


def test_a_new_account_has_no_file_until_something_is_kept(state_dir: Path) -> None:
    state = OmemoState.load(ACCOUNT)
    assert not state.existed and state.library == {}
    state.save()  # nothing changed: nothing written
    assert not state_dir.exists()


def test_round_trip_private_file(state_dir: Path) -> None:
    saved()
    (path,) = state_dir.iterdir()
    assert path == state_path("me@example.org") and path.name == "me@example.org.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700
    again = OmemoState.load("me@example.org")
    assert again.existed and again.get("/own_device_id") == 1234
    assert again.read == {"aid-1": {"body": "hello", "device": "99"}}


def test_the_file_is_replaced_atomically(state_dir: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    saved()
    path = state_path(ACCOUNT)
    before = path.read_bytes()
    state = OmemoState.load(ACCOUNT)
    state.put("/own_device_id", 5678)

    def torn(data: Any, f: Any, **_kw: Any) -> None:
        f.write('{"version": 1, "acc')  # half written, then the process dies
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("xmpp_tool.omemo_state.json.dump", torn)
    with pytest.raises(ToolError) as info:
        state.save()
    assert info.value.code == Exit.CONFIG and "No space left" in info.value.message
    assert path.read_bytes() == before  # the old file, whole
    assert [p.name for p in state_dir.iterdir()] == [path.name]  # no temporary left


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe", b"[]", b'{"version": 9}',
                                     b'{"version": 1, "account": "someone@else.org", '
                                     b'"library": {}, "read": {}}'])
def test_an_unusable_file_is_78_and_left_as_it_is(state_dir: Path, content: bytes) -> None:
    saved()
    path = state_path(ACCOUNT)
    path.write_bytes(content)
    with pytest.raises(ToolError) as info:
        OmemoState.load(ACCOUNT)
    assert info.value.code == Exit.CONFIG
    assert str(path) in info.value.message and "\n" not in info.value.message
    assert path.read_bytes() == content


def test_a_corrupted_file_stops_the_cli_before_the_network(
        state_dir: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    saved()
    path = state_path(ACCOUNT)
    path.write_bytes(b"garbage")
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    for argv in (["send", "-e", "bob@example.org", "hi"], ["trust"]):
        # 127.0.0.1:1 would be 69 (unreachable): 78 comes first
        res = run_cli(["-s", "127.0.0.1:1", "-u", ACCOUNT, *argv])
        assert res.code == Exit.CONFIG, res.stderr
        assert len(res.stderr.splitlines()) == 1 and "OMEMO state file" in res.stderr
        assert path.read_bytes() == b"garbage"


def test_decrypted_texts_are_bounded_and_forgotten_once_read(state_dir: Path,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:  # fmt: skip
    monkeypatch.setattr(omemo_state, "READ_LIMIT", 3)
    state = OmemoState.load(ACCOUNT)
    for i in range(5):
        state.remember(f"aid-{i}", f"text {i}", 1)
    assert list(state.read) == ["aid-2", "aid-3", "aid-4"]
    state.remember("ops@conference.example.org/aid-1", "in a room", 1)
    state.forget_except({"aid-3", "aid-9"}, {""})  # a run that read the chats only
    assert list(state.read) == ["aid-3", "ops@conference.example.org/aid-1"]
    state.forget_except({"aid-3"}, {"", "ops@conference.example.org"})
    assert list(state.read) == ["aid-3"]
    state.save()
    assert json.loads(state_path(ACCOUNT).read_text())["read"] == {
        "aid-3": {"body": "text 3", "device": "1"}}
    assert os.listdir(state_dir) == ["me@example.org.json"]
