"""Shell completion: offered words follow the POSIX syntax (options before operands)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

XMPP_TOOL = Path(sys.executable).parent / "xmpp-tool"


def run(env: dict[str, str]) -> str:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("XMPP_TOOL", "_XMPP"))}
    full.update(env)
    res = subprocess.run([str(XMPP_TOOL)], env=full, capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return res.stdout


def bash(words: str) -> list[str]:
    cword = len(words.split(" ")) - 1
    return run({"COMP_WORDS": words, "COMP_CWORD": str(cword),
                "_XMPP_TOOL_COMPLETE": "complete_bash"}).split()  # fmt: skip


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_source_scripts(shell: str) -> None:
    script = run({"_XMPP_TOOL_COMPLETE": f"source_{shell}"})
    assert "_XMPP_TOOL_COMPLETE" in script and "xmpp-tool" in script


def test_commands_and_global_options() -> None:
    assert bash("xmpp-tool ") == ["send", "unread", "trust"]
    assert set(bash("xmpp-tool -")) >= {"-s", "-u", "-C", "-J", "-t", "-v", "-q"}
    assert bash("xmpp-tool -J ") == ["send", "unread", "trust"]


def test_send_options_only_before_the_first_operand() -> None:
    assert set(bash("xmpp-tool send -")) >= {"-m", "-F", "-T", "-S", "-g", "-N", "-h"}
    assert bash("xmpp-tool send bob@example.org -") == []
    assert bash("xmpp-tool send -m hi a@example.org -") == []
    assert bash("xmpp-tool send -- -") == []


def test_option_values() -> None:
    assert bash("xmpp-tool send -T ") == ["chat", "normal", "headline"]
    assert bash("xmpp-tool send -T h") == ["headline"]
    assert set(bash("xmpp-tool unread -")) >= {"-c", "-m", "-n", "-g", "-G", "-r"}
