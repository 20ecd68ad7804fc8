"""Helpers for the unit tests: run the CLI in-process, isolated from the user's
config and environment, with no network beyond a closed loopback port."""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from xmpp_tool import cli


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


RunCli = Callable[..., Result]


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No user config, no inherited password: each test sets what it needs."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.delenv("XMPP_TOOL_PASSWORD", raising=False)
    return home


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(argv: list[str], stdin: bytes = b"") -> Result:
    out = io.BytesIO()
    err = io.StringIO()
    code = cli.run(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err)
    return Result(code, out.getvalue().decode("utf-8", "replace"), err.getvalue())


@pytest.fixture
def run_cli() -> RunCli:
    return _run


@dataclass
class Captured:
    calls: list[dict[str, object]]


@pytest.fixture
def captured_send(monkeypatch: pytest.MonkeyPatch) -> Captured:
    """Replace the network part of ``send`` to see what the CLI would send."""
    from xmpp_tool import send as send_module
    from xmpp_tool.outgoing import Outcome

    cap = Captured([])

    def fake_send(settings: object, password: str, recipients: list[Any], msg: Any,
                  **kwargs: Any) -> list[Any]:
        cap.calls.append(
            {"settings": settings, "password": password, "recipient": str(recipients[0]),
             "recipients": [str(r) for r in recipients], "body": msg.body if msg else None,
             "message": msg, **kwargs}
        )
        return [Outcome(str(r), ok=True) for r in recipients]

    monkeypatch.setattr(send_module, "send", fake_send)
    return cap
