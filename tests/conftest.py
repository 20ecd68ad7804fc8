"""Shared pytest set-up: markers and the no-skip rule for CI.

With XMPP_TOOL_NO_SKIP=1 (set by .ci/run) a skip is a failure, at collection time
too (a module-level ``pytest.skip``, ``importorskip``), so a CI run can never go
green by quietly not running the server or machine tests.

A test that needs a tool beyond the venv carries the marker naming it (``salt``,
``ruby``, ``git``, ``vagrant_cli``: REQUIREMENTS): when the tool is missing the test fails
with what to install, and ``-m "not ruby"`` (say) leaves such tests out on a
machine without it.  No unmarked test needs anything the venv does not have.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

NO_SKIP = os.environ.get("XMPP_TOOL_NO_SKIP") == "1"
ROOT = Path(__file__).resolve().parents[1]
SALT_CALL = ROOT / ".cache" / "salt-venv" / "bin" / "salt-call"

#: marker -> (is it there?, what to do when it is not)
REQUIREMENTS: dict[str, tuple[Callable[[], bool], str]] = {
    "salt": (SALT_CALL.exists, f"Salt's venv ({SALT_CALL}): bash tests/setup.d/20-salt.sh"),
    "ruby": (lambda: shutil.which("ruby") is not None,
             "ruby: bash tests/setup.sh (tests/apt/base.txt)"),
    "git": (lambda: shutil.which("git") is not None,
            "git: bash tests/setup.sh (tests/apt/base.txt)"),
    "vagrant_cli": (lambda: shutil.which("vagrant") is not None,
                    "the vagrant command: bash tests/setup.sh (tests/apt/vagrant.txt)"),
}  # fmt: skip


def _no_skip_failure(reason: object) -> str:
    return f"skipped in CI (XMPP_TOOL_NO_SKIP=1): {reason}"


def _skip_reason(longrepr: object) -> object:
    return longrepr[2] if isinstance(longrepr, tuple) else longrepr


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = _no_skip_failure(_skip_reason(report.longrepr))


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    """A module skipped while it is collected never reaches the hook above."""
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped:
        report.outcome = "failed"
        report.longrepr = _no_skip_failure(_skip_reason(report.longrepr))


def pytest_runtest_setup(item: pytest.Item) -> None:
    for name, (present, how) in REQUIREMENTS.items():
        if item.get_closest_marker(name) is not None and not present():
            pytest.fail(f"needs {how} (or leave these tests out: -m 'not {name}')",
                        pytrace=False)


@pytest.fixture(scope="session", autouse=True)
def state_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The CLI's state (unread's archive index, $XDG_STATE_HOME) lives in the test
    session's temporary directory, for the CLI run in-process and as a command."""
    path = tmp_path_factory.mktemp("xdg-state")
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_STATE_HOME", str(path))
    yield path
    patch.undo()
