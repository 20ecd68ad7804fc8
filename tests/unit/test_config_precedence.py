"""Config file: account selection and precedence (command line > config > defaults)."""

# ruff: noqa: S105  (test passwords, not secrets)

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from xmpp_tool import config
from xmpp_tool.config import resolve
from xmpp_tool.errors import Exit, ToolError
from xmpp_tool.request import CliOptions

CONFIG = """
default = "work"

[accounts.work]
jid = "alice@work.example"
server = "xmpp.work.example:5223"
cafile = "ca.crt"
direct_tls = true
timeout = 7
password_command = "echo secret"

[accounts.home]
jid = "alice@home.example"
fingerprint = "sha256:{fp}"
password_file = "~/pw"
""".format(fp=":".join(["AB"] * 32))


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    (tmp_path / "ca.crt").write_text("not really a certificate\n")
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    path.chmod(0o600)
    return path


def test_default_account_used_when_nothing_given(cfg: Path) -> None:
    s = resolve(CliOptions(config=cfg))
    assert s.account == "work"
    assert s.jid == "alice@work.example"
    assert (s.host, s.port) == ("xmpp.work.example", 5223)
    assert s.cafile == cfg.parent / "ca.crt"  # relative to the config file
    assert s.direct_tls is True
    assert s.timeout == 7
    assert s.password_command == "echo secret"


def test_command_line_overrides_config(cfg: Path, tmp_path: Path) -> None:
    other_ca = tmp_path / "other.crt"
    other_ca.write_text("x")
    s = resolve(
        CliOptions(config=cfg, account="work", user="bob@work.example",
                   server="127.0.0.1:5999", cafile=other_ca)
    )
    assert s.jid == "bob@work.example"
    assert (s.host, s.port) == ("127.0.0.1", 5999)
    assert s.cafile == other_ca
    assert s.password_command == "echo secret"  # what the CLI does not give stays


def test_named_account_and_fingerprint(cfg: Path) -> None:
    s = resolve(CliOptions(config=cfg, account="home"))
    assert s.jid == "alice@home.example"
    assert s.fingerprint == "ab" * 32
    assert s.host is None and s.port is None  # SRV, then the domain
    assert s.password_file == Path(os.path.expanduser("~/pw"))


def test_user_selects_the_account_with_that_jid(cfg: Path) -> None:
    s = resolve(CliOptions(config=cfg, user="alice@home.example"))
    assert s.account == "home"


def test_user_without_matching_account_uses_no_account(cfg: Path) -> None:
    # never pair another account's password source with a different JID
    s = resolve(CliOptions(config=cfg, user="carol@elsewhere.example"))
    assert s.account is None
    assert s.password_command is None and s.password_file is None


def test_default_path_is_xdg(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    xdg = isolated_env / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    (xdg / "xmpp-tool").mkdir(parents=True)
    (xdg / "xmpp-tool" / "config.toml").write_text('[accounts.x]\njid = "x@y.example"\n')
    assert config.default_config_path() == xdg / "xmpp-tool" / "config.toml"
    assert resolve(CliOptions()).jid == "x@y.example"  # the only account
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative/ignored")
    assert config.default_config_path() == isolated_env / ".config" / "xmpp-tool" / "config.toml"


def test_no_config_file_is_fine_with_u() -> None:
    s = resolve(CliOptions(user="a@b.example", server="[::1]:5222"))
    assert (s.jid, s.host, s.port) == ("a@b.example", "::1", 5222)


def expect(code: Exit, fn: Any, *args: Any) -> str:
    with pytest.raises(ToolError) as info:
        fn(*args)
    assert info.value.code == code
    assert "\n" not in info.value.message
    return info.value.message


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("this is [not toml", "invalid TOML"),
        ('surprise = 1\n', "unknown key 'surprise'"),
        ('[accounts.a]\njid = "a@b"\npasword = "typo"\n', "unknown key 'pasword'"),
        ('[accounts.a]\njid = 5\n', "'jid' must be a string"),
        ('[accounts.a]\njid = "a@b"\ndirect_tls = "yes"\n', "direct_tls"),
        ('[accounts.a]\njid = "a@b"\ntimeout = -1\n', "timeout"),
        ('default = "nope"\n[accounts.a]\njid = "a@b"\n', "'nope' is not defined"),
        ('[accounts.a]\njid = "a@b"\nserver = "h:99999"\n', "bad port"),
        ('[accounts.a]\njid = "a@b"\nfingerprint = "sha256:12"\n', "fingerprint"),
        ('[accounts.a]\njid = "a@b"\ncafile = "/nonexistent/ca.crt"\n', "not found"),
        ('[accounts.a]\njid = "a@b"\n[accounts.b]\njid = "c@d"\n', "several accounts"),
    ],
)
def test_config_errors_are_78(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    msg = expect(Exit.CONFIG, resolve, CliOptions(config=path))
    assert fragment in msg


def test_missing_config_and_account_errors(tmp_path: Path, cfg: Path) -> None:
    assert "not found" in expect(Exit.CONFIG, resolve, CliOptions(config=tmp_path / "nope"))
    assert "no account named" in expect(Exit.CONFIG, resolve, CliOptions(config=cfg, account="x"))
    assert "no config file" in expect(Exit.CONFIG, resolve, CliOptions(account="x"))
    assert "no account JID" in expect(Exit.CONFIG, resolve, CliOptions())
    assert "CA file" in expect(Exit.CONFIG, resolve,
                               CliOptions(user="a@b", cafile=tmp_path / "none.crt"))
    # a NUL byte cannot come from exec's argv, but cli.run() may be given one
    assert "not a valid file name" in expect(Exit.CONFIG, resolve, CliOptions(config=Path("\0")))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("example.org", ("example.org", None)),
        ("example.org:5223", ("example.org", 5223)),
        ("[2001:db8::1]:5222", ("2001:db8::1", 5222)),
        ("2001:db8::1", ("2001:db8::1", None)),
        ("[::1]", ("::1", None)),
    ],
)
def test_parse_server(value: str, expected: tuple[str, int | None]) -> None:
    assert config.parse_server(value, source="-s") == expected


@pytest.mark.parametrize("value", ["", "host:", "host:0", "host:x", "[::1", "[::1]x", "a b:1"])
def test_bad_server_on_command_line_is_usage_error(value: str) -> None:
    with pytest.raises(ToolError) as info:
        config.parse_server(value, source="-s")
    assert info.value.code == Exit.USAGE
