"""Exit-code mapping: every failure is one line on stderr and a documented code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xmpp_tool import errors, send
from xmpp_tool.errors import EXIT_CODES, Exit

DOCUMENTED = set(EXIT_CODES)


def test_codes_are_the_sysexits_values() -> None:
    assert {int(c) for c in Exit} == {0, 64, 65, 69, 70, 75, 76, 77, 78, 130}
    assert DOCUMENTED == {int(c) for c in Exit} - {Exit.SOFTWARE, Exit.INTERRUPTED}


def test_help_documents_every_exit_code(run_cli: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # (Typer prints help on the real sys.stdout)
    assert run_cli(["--help"]).code == 0
    out = capsys.readouterr().out
    for code, text in EXIT_CODES.items():
        assert f"{code:<3} {text}" in out
    for command in ("send", "unread"):
        assert run_cli([command, "-h"]).code == 0
        assert "77  authentication" in capsys.readouterr().out


def one_line_error(res: Any) -> str:
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("xmpp-tool: ")
    assert "Traceback" not in res.stderr
    return str(lines[0])


@pytest.mark.parametrize(
    ("argv", "stdin", "code"),
    [
        ([], b"", Exit.USAGE),
        (["frobnicate"], b"", Exit.USAGE),
        (["send"], b"", Exit.USAGE),
        (["unread", "-n", "zero"], b"", Exit.USAGE),
        (["unread", "-n", "0"], b"", Exit.USAGE),
        (["unread", "-c", "-m"], b"", Exit.USAGE),
        (["unread", "-g", "-G"], b"", Exit.USAGE),
        (["unread", "-G", "-r", "ops@conference.example.org"], b"", Exit.USAGE),
        (["-u", "a@example.org", "unread", "-r", "conference.example.org"], b"", Exit.DATAERR),
        (["-u", "a@example.org", "unread", "-r", "ops@@example.org"], b"", Exit.DATAERR),
        (["-u", "a@example.org", "send", "b@example.org"], b"", Exit.DATAERR),
        (["-u", "a@example.org", "send", "b@example.org", "-"], b"\xff\xfe", Exit.DATAERR),
        (["-u", "a@example.org", "send", "b@example.org", " \n "], b"", Exit.DATAERR),
        (["-u", "a@example.org", "send", "b@example.org", "bell\x07"], b"", Exit.DATAERR),
        (["-u", "a@example.org", "send", "b@@example.org", "x"], b"", Exit.DATAERR),
        (["-u", "not a jid@", "send", "b@example.org", "x"], b"", Exit.DATAERR),
        (["-u", "a@example.org", "-f", "/nonexistent.toml", "unread"], b"", Exit.CONFIG),
        (["unread"], b"", Exit.CONFIG),  # no JID anywhere
    ],
)
def test_failures_map_to_codes(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch, argv: list[str], stdin: bytes, code: Exit
) -> None:
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    res = run_cli(argv, stdin=stdin)
    assert res.code == code, res.stderr
    one_line_error(res)


def test_body_too_large_is_data_error(run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    res = run_cli(["-u", "a@example.org", "send", "b@example.org"],
                  stdin=b"x" * (send.MAX_BODY + 1))
    assert res.code == Exit.DATAERR
    assert "larger than" in one_line_error(res)


def test_unreachable_is_69(run_cli: Any, monkeypatch: pytest.MonkeyPatch,
                           closed_port: int) -> None:
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    for command in (["send", "b@example.org", "hi"], ["unread"]):
        res = run_cli(["-s", f"127.0.0.1:{closed_port}", "-u", "a@example.org", *command])
        assert res.code == Exit.UNAVAILABLE
        assert f"127.0.0.1:{closed_port}" in one_line_error(res)


def test_password_prompt_without_terminal_is_78(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmpp_tool import password

    monkeypatch.setattr(password, "_have_tty", lambda: False)
    res = run_cli(["-s", "127.0.0.1:1", "-u", "a@example.org", "unread"])
    assert res.code == Exit.CONFIG
    assert "XMPP_TOOL_PASSWORD" in one_line_error(res)


def test_tool_errors_become_their_code(run_cli: Any, monkeypatch: pytest.MonkeyPatch,
                                       tmp_path: Path) -> None:
    from xmpp_tool import config

    for code in (Exit.TEMPFAIL, Exit.PROTOCOL, Exit.NOPERM):
        def boom(*_a: Any, _code: Exit = code, **_k: Any) -> Any:
            raise errors.ToolError(_code, "multi\nline\nmessage")

        monkeypatch.setattr(config, "resolve", boom)
        res = run_cli(["unread"])
        assert res.code == code
        assert one_line_error(res) == "xmpp-tool: multi line message"


def test_unexpected_exception_is_one_line_not_traceback(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from xmpp_tool import config

    def bug(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("bug\nhere")

    monkeypatch.setattr(config, "resolve", bug)
    res = run_cli(["unread"])
    assert res.code == Exit.SOFTWARE
    assert "internal error: RuntimeError: bug here" in one_line_error(res)
