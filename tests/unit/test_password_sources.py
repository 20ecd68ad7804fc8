"""Password sources, in their documented order, and the config-mode refusal."""

# ruff: noqa: S105, S106  (test passwords, not secrets)

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xmpp_tool.config import Settings
from xmpp_tool.errors import Exit, ToolError
from xmpp_tool.password import ENV_VAR, get_password


def settings(tmp_path: Path, mode: int = 0o600, **kw: Any) -> Settings:
    cfg = tmp_path / "config.toml"
    cfg.write_text("# config\n")
    cfg.chmod(mode)
    return Settings(jid="alice@example.org", config_path=cfg, **kw)


def no_prompt(_text: str) -> str:
    raise AssertionError("must not prompt")


def test_environment_wins_over_everything(tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
    pwfile.write_text("from-file\n")
    s = settings(tmp_path, password_command="echo from-command", password_file=pwfile,
                 inline_password="inline")
    assert get_password(s, {ENV_VAR: "from-env"}, prompt=no_prompt) == (
        "from-env", f"environment {ENV_VAR}")


def test_command_before_file_and_inline(tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
    pwfile.write_text("from-file\n")
    s = settings(tmp_path, password_command="printf 'from-command\\nsecond line\\n'",
                 password_file=pwfile, inline_password="inline")
    assert get_password(s, {}, prompt=no_prompt)[0] == "from-command"


def test_command_does_not_read_our_stdin(tmp_path: Path) -> None:
    # the message body may be on stdin: the command gets /dev/null
    s = settings(tmp_path, password_command="cat; echo pw")
    assert get_password(s, {}, prompt=no_prompt)[0] == "pw"


def test_file_before_inline(tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
    pwfile.write_text("from-file\nignored\n")
    s = settings(tmp_path, password_file=pwfile, inline_password="inline")
    assert get_password(s, {}, prompt=no_prompt)[0] == "from-file"


def test_inline_when_config_is_private(tmp_path: Path) -> None:
    s = settings(tmp_path, mode=0o600, inline_password="inline")
    assert get_password(s, {}, prompt=no_prompt)[0] == "inline"
    s = settings(tmp_path, mode=0o400, inline_password="inline")
    assert get_password(s, {}, prompt=no_prompt)[0] == "inline"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_inline_refused_when_config_readable_by_others(tmp_path: Path, mode: int) -> None:
    s = settings(tmp_path, mode=mode, inline_password="s3cr3t-value")
    with pytest.raises(ToolError) as info:
        get_password(s, {}, prompt=no_prompt)
    assert info.value.code == Exit.CONFIG
    assert str(s.config_path) in info.value.message
    assert f"{mode:04o}" in info.value.message
    assert "s3cr3t-value" not in info.value.message


def test_prompt_last(tmp_path: Path) -> None:
    asked: list[str] = []

    def prompt(text: str) -> str:
        asked.append(text)
        return "typed"

    s = settings(tmp_path)
    assert get_password(s, {}, prompt=prompt) == ("typed", "terminal prompt")
    assert asked == ["Password for alice@example.org: "]


def test_no_terminal_no_source_is_config_error(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with pytest.raises(ToolError) as info:
        get_password(s, {}, have_tty=lambda: False)
    assert info.value.code == Exit.CONFIG
    assert ENV_VAR in info.value.message


@pytest.mark.parametrize(
    ("command", "fragment"),
    [("exit 3", "exit status 3"), ("true", "no password"), ("printf '\\377'", "not UTF-8")],
)
def test_password_command_failures(tmp_path: Path, command: str, fragment: str) -> None:
    s = settings(tmp_path, password_command=command)
    with pytest.raises(ToolError) as info:
        get_password(s, {}, prompt=no_prompt)
    assert info.value.code == Exit.CONFIG
    assert fragment in info.value.message


def test_password_file_failures(tmp_path: Path) -> None:
    for path, fragment in [(tmp_path / "missing", "not found"), (tmp_path, "Is a directory")]:
        s = settings(tmp_path, password_file=path)
        with pytest.raises(ToolError) as info:
            get_password(s, {}, prompt=no_prompt)
        assert info.value.code == Exit.CONFIG
        assert fragment in info.value.message
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ToolError):
        get_password(settings(tmp_path, password_file=empty), {}, prompt=no_prompt)


def test_password_never_in_verbose_output_or_errors(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    secret = "hunter2-very-secret"
    monkeypatch.setenv(ENV_VAR, secret)
    res = run_cli(["-v", "-s", f"127.0.0.1:{closed_port}", "-u", "alice@example.org",
                   "send", "bob@example.org", "hi"])
    assert res.code == Exit.UNAVAILABLE
    assert secret not in res.stderr and secret not in res.stdout
    assert "password from environment" in res.stderr  # -v names the source only
