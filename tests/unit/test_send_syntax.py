"""``send``'s own options: several recipients, type, subject, group chats, files.

The one-recipient form ``send RECIPIENT [MESSAGE|-]`` is unchanged (see
test_posix_syntax.py); with ``-m`` or ``-F`` every operand is a recipient.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from xmpp_tool import password, send
from xmpp_tool.cli import parse
from xmpp_tool.cli.typer_app import click_command
from xmpp_tool.errors import Exit, ToolError
from xmpp_tool.outgoing import Outcome, OutgoingMessage
from xmpp_tool.request import SendRequest

G = ["-s", "127.0.0.1:1", "-u", "alice@example.org"]


def req(argv: list[str]) -> SendRequest:
    r = parse(argv)
    assert isinstance(r, SendRequest), r
    return r


def usage(argv: list[str]) -> str:
    with pytest.raises(ToolError) as info:
        parse(argv)
    assert info.value.code == Exit.USAGE
    return info.value.message


def test_one_recipient_form_unchanged() -> None:
    r = req(["send", "bob@example.org", "hi"])
    assert (r.recipients, r.message, r.mtype, r.subject) == (("bob@example.org",), "hi",
                                                             "chat", None)
    assert r.recipient == "bob@example.org"
    assert req(["send", "bob@example.org"]).message is None


def test_message_option_makes_every_operand_a_recipient() -> None:
    r = req(["send", "-m", "hi", "a@x.org", "b@x.org", "c@x.org"])
    assert r.recipients == ("a@x.org", "b@x.org", "c@x.org")
    assert r.message == "hi"
    assert req(["send", "-mhi", "a@x.org"]) == req(["send", "--message=hi", "a@x.org"])
    stdin = req(["send", "-m", "-", "a@x.org", "b@x.org"])
    assert stdin.message == "-" and len(stdin.recipients) == 2


def test_three_operands_without_m_is_a_usage_error() -> None:
    assert "-m" in usage(["send", "a@x.org", "b@x.org", "hi"])


@pytest.mark.parametrize("argv", [["send"], ["send", "-m", "hi"], ["send", "-F", "f"],
                                  ["send", "--"]])  # fmt: skip
def test_missing_recipient(argv: list[str]) -> None:
    assert "RECIPIENT" in usage(argv)


def test_options_end_at_first_operand() -> None:
    # guideline 9: after the first recipient, "-T" is a recipient, not an option
    r = req(["send", "-m", "hi", "a@x.org", "-T", "headline"])
    assert r.recipients == ("a@x.org", "-T", "headline") and r.mtype == "chat"
    # guideline 10: -- ends options, a recipient may then start with -
    assert req(["send", "-m", "x", "--", "-a@x.org"]).recipients == ("-a@x.org",)


def test_type_and_subject() -> None:
    r = req(["send", "-T", "headline", "-S", "Build 42", "bob@example.org", "failed"])
    assert (r.mtype, r.subject, r.message) == ("headline", "Build 42", "failed")
    assert req(["send", "-Tnormal", "b@x.org", "x"]).mtype == "normal"
    assert "chat, normal, headline" in usage(["send", "-T", "groupchat", "b@x.org", "x"])


def test_groupchat_and_nick() -> None:
    r = req(["send", "-g", "-N", "bot", "-m", "hi", "room@muc.x.org", "r2@muc.x.org"])
    assert r.groupchat and r.nick == "bot" and r.mtype == "groupchat"
    assert r.recipients == ("room@muc.x.org", "r2@muc.x.org")
    # grouped: -g is a flag, -N takes the rest
    assert req(["send", "-gNbot", "room@muc.x.org", "hi"]) == req(
        ["send", "-g", "-N", "bot", "room@muc.x.org", "hi"])
    assert "-N needs -g" in usage(["send", "-N", "bot", "b@x.org", "x"])
    assert "-g" in usage(["send", "-g", "-T", "chat", "r@muc.x.org", "x"])
    assert "topic" in usage(["send", "-g", "-S", "s", "r@muc.x.org", "x"])
    assert "empty" in usage(["send", "-g", "-N", " ", "r@muc.x.org", "x"])


def test_file_option() -> None:
    r = req(["send", "-F", "report.pdf", "a@x.org", "b@x.org"])
    assert r.file == "report.pdf" and r.message is None
    assert r.recipients == ("a@x.org", "b@x.org")
    assert "mutually exclusive" in usage(["send", "-F", "f", "-m", "x", "a@x.org"])


def test_every_new_option_goes_to_typer_not_the_fast_path() -> None:
    from xmpp_tool.cli import fastargs

    for opt in (["-m", "x"], ["-F", "f"], ["-T", "normal"], ["-S", "s"], ["-g"]):
        assert fastargs.parse_send(["send", *opt, "a@x.org"]) is None


# ------------------------------------------------------------ what goes out


def test_several_recipients_one_login(run_cli: Any, captured_send: Any,
                                      monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    res = run_cli([*G, "-J", "send", "-T", "normal", "-S", "subj", "-m", "-",
                   "a@x.org", "b@x.org/res", "a@x.org"], stdin=b"body\n")  # fmt: skip
    assert res.code == Exit.OK, res.stderr
    (call,) = captured_send.calls
    assert call["recipients"] == ["a@x.org", "b@x.org/res"]  # the duplicate once
    assert call["message"] == OutgoingMessage("body", "normal", "subj")
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [(d["recipient"], d["status"]) for d in lines] == [
        ("a@x.org", "sent"), ("b@x.org/res", "sent")]


def test_invalid_recipient_among_several_sends_nothing(run_cli: Any, captured_send: Any,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    res = run_cli([*G, "send", "-m", "x", "a@x.org", "@bad"])
    assert res.code == Exit.DATAERR
    assert "@bad" in res.stderr and len(res.stderr.splitlines()) == 1
    assert captured_send.calls == []


def test_room_needs_a_local_part(run_cli: Any, captured_send: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    res = run_cli([*G, "send", "-g", "muc.x.org", "x"])
    assert res.code == Exit.DATAERR and "room" in res.stderr
    assert captured_send.calls == []


def test_unusable_file_sends_nothing(run_cli: Any, captured_send: Any, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for path, why in [(tmp_path / "missing", "no such file"), (tmp_path, "not a regular file"),
                      (empty, "empty")]:  # fmt: skip
        res = run_cli([*G, "send", "-F", str(path), "b@x.org"])
        assert res.code == Exit.DATAERR, res.stderr
        assert why in res.stderr
    assert captured_send.calls == []


def test_report_of_several_outcomes() -> None:
    import io

    out = io.BytesIO()
    outcomes = [Outcome("a@x.org", ok=True, id="1"),
                Outcome("b@x.org", error="item-not-found", id="2")]  # fmt: skip
    with pytest.raises(ToolError) as info:
        send.report(outcomes, out)
    assert info.value.code == Exit.PROTOCOL
    assert info.value.message == "1 of 2 recipients refused: b@x.org: item-not-found"
    lines = [json.loads(line) for line in out.getvalue().decode().splitlines()]
    assert lines == [{"recipient": "a@x.org", "status": "sent", "id": "1"},
                     {"recipient": "b@x.org", "status": "refused", "error": "item-not-found",
                      "id": "2"}]  # fmt: skip
    send.report([Outcome("a@x.org", ok=True)], None)  # all sent: no error


def test_room_password_never_from_argv(tmp_path: Path) -> None:
    from xmpp_tool.config import Settings

    plain = Settings(jid="a@x.org", password_command="echo account-password")  # noqa: S106
    assert password.room_password(plain, {"XMPP_TOOL_ROOM_PASSWORD": "s"}) == "s"
    assert password.room_password(plain, {}) is None  # never the account's password
    secret = tmp_path / "room.secret"
    secret.write_text("from-file\n")
    assert password.room_password(Settings(jid="a@x.org", room_password_file=secret), {}) == (
        "from-file")
    cmd = Settings(jid="a@x.org", room_password_command="printf 'from-cmd\\n'")  # noqa: S106
    assert password.room_password(cmd, {}) == "from-cmd"
    assert password.room_password(cmd, {"XMPP_TOOL_ROOM_PASSWORD": "env"}) == "env"
    with pytest.raises(ToolError) as info:
        password.room_password(Settings(jid="a@x.org", room_password_file=tmp_path / "no"), {})
    assert info.value.code == Exit.CONFIG and info.value.message.startswith("room password:")
    group = click_command()
    params = group.commands["send"].get_params(group.make_context("xmpp-tool", ["unread"]))
    assert not any("password" in (p.name or "") for p in params)


def test_upload_tls_is_the_sessions(tmp_path: Path) -> None:
    """The PUT is verified like the XMPP stream: CA file / system store with the
    host name checked, or the account's SHA-256 pin."""
    import ssl

    import aiohttp

    from xmpp_tool.config import Settings
    from xmpp_tool.upload import Upload

    f = tmp_path / "f.txt"
    f.write_text("x")
    pin = "ab" * 32
    pinned = Upload.open(str(f), Settings(jid="a@x.org", fingerprint=pin))._ssl()
    assert isinstance(pinned, aiohttp.Fingerprint) and pinned.fingerprint == bytes.fromhex(pin)
    plain = Upload.open(str(f), Settings(jid="a@x.org"))._ssl()
    assert isinstance(plain, ssl.SSLContext)
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname


def test_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import os
    import sys

    from xmpp_tool.upload import progress_wanted

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert not progress_wanted(quiet=False)
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            monkeypatch.setattr(sys, "stderr", tty)
            assert progress_wanted(quiet=False)
            assert not progress_wanted(quiet=True)
    finally:
        os.close(master)
        os.close(slave)
