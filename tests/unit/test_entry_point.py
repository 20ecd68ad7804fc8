"""The real entry points (console script and ``python -m``): one-line errors, fast."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "XMPP_TOOL_PASSWORD"}
    return subprocess.run([sys.executable, "-m", "xmpp_tool", *argv], input=stdin,
                          capture_output=True, env=env, cwd=ROOT, timeout=60, check=False)


def test_python_m_help() -> None:
    res = run(["--help"])
    assert res.returncode == 0
    assert b"Exit status:" in res.stdout and b"send" in res.stdout


def test_python_m_usage_error_is_64_one_line() -> None:
    res = run(["--no-such-option"])
    assert res.returncode == 64
    assert res.stdout == b""
    assert res.stderr.count(b"\n") == 1 and b"Traceback" not in res.stderr


def in_fresh_python(code: str, env: dict[str, str] | None = None) -> None:
    """Run ``code`` (asserts) in a new interpreter: what a fresh process imports."""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT, env=env,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr.decode()


def test_usage_errors_do_not_import_slixmpp() -> None:
    code = (
        "import sys\n"
        "from xmpp_tool import cli\n"
        "rc = cli.run(['-v', '-q', 'unread'])\n"
        "assert rc == 64, rc\n"
        "assert 'slixmpp' not in sys.modules\n"
        "assert 'pydantic' not in sys.modules\n"
    )
    in_fresh_python(code)


@pytest.mark.parametrize("script", ["xmpp-tool"])
def test_console_script_installed(script: str) -> None:
    exe = Path(sys.executable).parent / script
    assert exe.exists(), f"{exe} missing: pip install -e ."
    res = subprocess.run([str(exe), "--version"], capture_output=True, timeout=60, check=False)
    assert res.returncode == 0 and res.stdout.startswith(b"xmpp-tool ")


def test_slixmpp_version_without_importlib_metadata() -> None:
    # slixmpp looks its own version up with importlib.metadata (~12 ms of imports);
    # xmpp-tool gives it the same answer from the dist-info directory's name.
    code = (
        "import sys\n"
        "from xmpp_tool import slix\n"
        "slix.prepare(need_dns=False)\n"
        "import slixmpp\n"
        "assert 'importlib.metadata' not in sys.modules\n"
        "from importlib.metadata import version\n"
        "assert slixmpp.__version__ == version('slixmpp'), slixmpp.__version__\n"
        "want = tuple(int(p) for p in version('slixmpp').split('.')[:3])\n"
        "assert slixmpp.__version_info__ == want, slixmpp.__version_info__\n"
    )
    in_fresh_python(code)


def test_send_does_not_import_typer_or_other_heavy_modules(tmp_path: Path) -> None:
    # The whole send path, up to the (refused) connection: Typer, its vendored
    # Click, rich, pydantic, importlib.metadata, pygments and (with -s) aiodns
    # are never imported; each of them costs 10-50 ms of CPU here.  Nor is
    # tomllib when there is no config file.
    code = (
        "import socket, sys\n"
        "from xmpp_tool import cli\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]; s.close()\n"
        "rc = cli.run(['-Jv', '-s', f'127.0.0.1:{port}', '-u', 'a@example.org',\n"
        "              'send', 'b@example.org', 'hi'])\n"
        "assert rc == 69, rc\n"
        "heavy = ('typer', 'click', 'rich', 'shellingham', 'pydantic', 'importlib.metadata',\n"
        "         'pygments', 'aiodns', 'pycares', 'tomllib')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "                or m.startswith('importlib.metadata'))\n"
        "assert not loaded, loaded\n"
        "assert 'slixmpp' in sys.modules\n"
    )
    env = {**os.environ, "XMPP_TOOL_PASSWORD": "pw", "HOME": str(tmp_path),
           "XDG_CONFIG_HOME": str(tmp_path / ".config")}  # fmt: skip
    in_fresh_python(code, env)


def test_garbage_collector_is_off_during_start_up_only(
    run_cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # main() pauses the collector for the imports; it is back on for the XMPP work.
    from xmpp_tool import cli
    from xmpp_tool import send as send_module

    during_send: list[bool] = []

    def fake_send(*_a: object, **_k: object) -> list[object]:
        during_send.append(gc.isenabled())
        return []

    monkeypatch.setattr(send_module, "send", fake_send)
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "pw")
    cli._pause_gc()
    try:
        assert not gc.isenabled()
        res = run_cli(["-s", "127.0.0.1:1", "-u", "a@example.org", "send", "b@example.org", "x"])
        assert res.code == 0, res.stderr
        assert during_send == [True]
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
