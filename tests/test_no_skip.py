"""tests/conftest.py's rules, run on made-up test files in a pytest of their own:
under XMPP_TOOL_NO_SKIP=1 every kind of skip fails the run, collection included,
and a test marked with a tool that is missing fails rather than skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

CONFTEST = Path(__file__).resolve().parent / "conftest.py"

SKIPS = {
    "module-level skip": "import pytest\npytest.skip('no', allow_module_level=True)\n"
                         "def test_x():\n    pass\n",
    "importorskip": "import pytest\npytest.importorskip('no_such_module_xyz')\n"
                    "def test_x():\n    pass\n",
    "skip in a test": "import pytest\ndef test_x():\n    pytest.skip('no')\n",
    "skipif marker": "import pytest\n@pytest.mark.skipif(True, reason='no')\n"
                     "def test_x():\n    pass\n",
    "module-wide mark": "import pytest\npytestmark = pytest.mark.skip(reason='no')\n"
                        "def test_x():\n    pass\n",
    "skip in a fixture": "import pytest\n@pytest.fixture\ndef f():\n    pytest.skip('no')\n"
                         "def test_x(f):\n    pass\n",
}  # fmt: skip


def pytest_in(tmp_path: Path, tests: dict[str, str], no_skip: bool,
              path: str | None = None) -> subprocess.CompletedProcess[str]:
    """A pytest run over ``tests`` (file stem -> source) with our conftest."""
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    for stem, source in tests.items():
        (tmp_path / f"test_{stem}.py").write_text(source)
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n    salt: x\n    ruby: x\n    git: x\n    vagrant_cli: x\n")
    env = {k: v for k, v in os.environ.items() if k != "XMPP_TOOL_NO_SKIP"}
    if no_skip:
        env["XMPP_TOOL_NO_SKIP"] = "1"
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA",
         "--continue-on-collection-errors", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)


def stem(kind: str) -> str:
    return kind.replace(" ", "_").replace("-", "_")


def test_every_kind_of_skip_fails_the_run_under_no_skip(tmp_path: Path) -> None:
    res = pytest_in(tmp_path, {stem(k): v for k, v in SKIPS.items()}, no_skip=True)
    assert res.returncode == 1, res.stdout
    summary = [line for line in res.stdout.splitlines()
               if line.startswith(("FAILED", "ERROR", "SKIPPED", "PASSED"))]  # fmt: skip
    for kind in SKIPS:
        mine = [line for line in summary if f"test_{stem(kind)}.py" in line]
        assert len(mine) == 1 and mine[0].startswith(("FAILED", "ERROR")), (kind, summary)
        assert "skipped in CI (XMPP_TOOL_NO_SKIP=1)" in res.stdout
    assert " passed" not in res.stdout.splitlines()[-1] and "skipped" not in (
        res.stdout.splitlines()[-1])


def test_without_no_skip_they_are_skips(tmp_path: Path) -> None:
    res = pytest_in(tmp_path, {stem(k): v for k, v in SKIPS.items()}, no_skip=False)
    assert res.returncode == 0, res.stdout
    assert res.stdout.splitlines()[-1].startswith(f"{len(SKIPS)} skipped"), res.stdout


def test_a_marked_test_whose_tool_is_missing_fails_saying_what_to_install(
    tmp_path: Path,
) -> None:
    test = "import pytest\n@pytest.mark.ruby\ndef test_x():\n    pass\n"
    bare = tmp_path / "bin"
    bare.mkdir()
    res = pytest_in(tmp_path, {"ruby": test}, no_skip=False, path=str(bare))  # no ruby
    assert res.returncode == 1, res.stdout
    assert "needs ruby: bash tests/setup.sh" in res.stdout, res.stdout
    assert "-m 'not ruby'" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("1 error"), res.stdout
