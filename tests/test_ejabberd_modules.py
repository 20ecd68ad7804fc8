"""The ejabberd formula's own modules (salt/ejabberd/files/modules) compile cleanly.

Salt compiles them on each node against that node's ejabberd (23.01 on Debian 12, 24.12
on Debian 13); this compiles them here, warnings as errors, against the host's ejabberd
(the one the server tests start), so a typo fails in seconds instead of in a booted
machine.  The machine tests (tests/machines/test_nemesis.py) check what they do.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.servers

SOURCES = Path(__file__).resolve().parents[1] / "salt/ejabberd/files/modules"
MODULES = sorted(SOURCES.glob("*.erl"))


def test_there_are_modules() -> None:
    assert [m.stem for m in MODULES] == ["mod_durable_ack", "mod_quorum"]


@pytest.mark.parametrize("source", MODULES, ids=[m.stem for m in MODULES])
def test_module_compiles_without_warnings(source: Path, tmp_path: Path) -> None:
    erlc = shutil.which("erlc")
    includes = glob.glob("/usr/lib/*/ejabberd-*/include") + glob.glob(
        "/usr/lib/erlang/lib/p1_xmpp-*/include")
    ebins = glob.glob("/usr/lib/*/ejabberd-*/ebin")
    if not (erlc and includes and ebins):
        pytest.skip("needs ejabberd and erlc (bash tests/setup.sh installs them)")
    cmd = [erlc, "-Werror", "-o", str(tmp_path)]
    for d in ebins:
        cmd += ["-pa", d]
    for d in includes:
        cmd += ["-I", d]
    res = subprocess.run([*cmd, str(source)], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / f"{source.stem}.beam").exists()
