"""The OMEMO command line: ``send -e``/``-E`` (and the account's ``omemo`` setting),
``trust [-t|-d] [JID [DEVICE...]]``; what OMEMO cannot carry is refused before anything
is sent (64)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xmpp_tool import config
from xmpp_tool.cli import parse
from xmpp_tool.errors import Exit, ToolError
from xmpp_tool.request import CliOptions, SendRequest, TrustRequest


def req(argv: list[str]) -> Any:
    return parse(argv)


def usage(argv: list[str]) -> str:
    with pytest.raises(ToolError) as info:
        parse(argv)
    assert info.value.code == Exit.USAGE
    return info.value.message


def test_send_e_and_E() -> None:
    assert req(["send", "-e", "bob@example.org", "hi"]).encrypt is True
    assert req(["send", "-E", "bob@example.org", "hi"]).encrypt is False
    plain = req(["send", "bob@example.org", "hi"])  # the fast parser: the account decides
    assert isinstance(plain, SendRequest) and plain.encrypt is None
    assert req(["send", "-e", "-m", "hi", "a@example.org", "b@example.org"]).recipients == (
        "a@example.org", "b@example.org")
    assert "mutually exclusive" in usage(["send", "-e", "-E", "bob@example.org", "hi"])
    assert "subject" in usage(["send", "-e", "-S", "s", "bob@example.org", "hi"])


def test_trust_lists_or_decides() -> None:
    r = req(["trust"])
    assert isinstance(r, TrustRequest) and (r.jid, r.devices, r.level) == (None, (), None)
    r = req(["trust", "bob@example.org"])
    assert (r.jid, r.level) == ("bob@example.org", None)
    r = req(["trust", "-t", "bob@example.org", "123", "05a1b2c3 d4e5f607"])
    assert (r.jid, r.devices, r.level) == ("bob@example.org", ("123", "05a1b2c3 d4e5f607"),
                                           "trusted")  # fmt: skip
    assert req(["trust", "-d", "bob@example.org", "123"]).level == "distrusted"
    assert "mutually exclusive" in usage(["trust", "-t", "-d", "bob@example.org", "1"])
    assert "needs a JID and at least one DEVICE" in usage(["trust", "-t", "bob@example.org"])
    assert "need -t" in usage(["trust", "bob@example.org", "123"])
    # POSIX: options end at the first operand
    assert "need -t" in usage(["trust", "bob@example.org", "-t", "123"])


def test_the_accounts_omemo_setting_makes_e_the_default(
        tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[accounts.me]\njid = "alice@example.org"\nomemo = true\n'
                   "omemo_blind_trust = false\n")
    cfg.chmod(0o600)
    settings = config.resolve(CliOptions(config=cfg))
    assert (settings.omemo, settings.omemo_blind_trust) == (True, False)
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    # with omemo = true, a subject is refused as with -e; -E sends it in clear
    res = run_cli(["-f", str(cfg), "-s", "127.0.0.1:1", "send", "-S", "s", "bob@example.org",
                   "hi"])
    assert res.code == Exit.USAGE and "omemo setting" in res.stderr, res.stderr
    res = run_cli(["-f", str(cfg), "-s", "127.0.0.1:1", "send", "-E", "-S", "s",
                   "bob@example.org", "hi"])
    assert res.code == Exit.UNAVAILABLE, res.stderr  # got as far as connecting
    cfg.write_text('[accounts.me]\njid = "alice@example.org"\nomemo = "yes"\n')
    with pytest.raises(ToolError) as info:
        config.resolve(CliOptions(config=cfg))
    assert info.value.code == Exit.CONFIG and "'omemo' must be true or false" in str(info.value)
