"""tests/infra's own rules, without a lab machine: the suite passes only when its
machine ran and passed every check of its roles.

The suite runs here against this host (``--hosts=local://``) with a made-up
``salt-call`` first on PATH that prints the pillar under test, and a plugin that
stands in for the checks' bodies (they would inspect this host, not a lab machine):
what is tested is the counting around them, by the suite's own conftest.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra import roles

ROOT = Path(__file__).resolve().parents[1]

#: stands in for every check's body; skips the checks named in $FAKE_SKIP
PLUGIN = """
import os
import pytest

@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if pyfuncitem.originalname in os.environ.get("FAKE_SKIP", "").split(","):
        pytest.skip("made-up skip")
    return True
"""


def infra_run(tmp_path: Path, pillar_roles: list[str], *args: str,
              skip: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    pillar = {"local": {"roles": pillar_roles, "lab": {"hosts": {}, "machines": {}}}}
    salt_call = bin_dir / "salt-call"
    salt_call.write_text(f"#!/bin/sh\ncat <<'EOF'\n{json.dumps(pillar)}\nEOF\n")
    salt_call.chmod(0o755)
    (tmp_path / "fake_checks.py").write_text(PLUGIN)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "PYTHONPATH": str(tmp_path), "FAKE_SKIP": ",".join(skip)}
    env.pop("XMPP_TOOL_NO_SKIP", None)  # the suite's own rule, not the CI-wide one
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "fake_checks",
         "-q", "tests/infra", "--hosts=local://", "--minion-id=lb", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_every_check_of_the_role_passed_is_a_pass(tmp_path: Path) -> None:
    due = roles.expected(["haproxy"])
    res = infra_run(tmp_path, ["haproxy"], "--role=haproxy")
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"tests/infra: lb: {len(due)} of {len(due)} checks passed" in res.stdout
    assert f"{len(due)} passed" in res.stdout


def test_a_skipped_check_fails_the_run(tmp_path: Path) -> None:
    due = roles.expected(["haproxy"])
    skipped = roles.checks()["haproxy"][0]
    res = infra_run(tmp_path, ["haproxy"], "--role=haproxy", skip=(skipped,))
    assert res.returncode == 1, res.stdout + res.stderr
    assert (f"tests/infra: lb: {len(due) - 1} of {len(due)} checks passed; "
            f"not passed: {skipped}") in res.stdout


def test_a_deselected_check_fails_the_run(tmp_path: Path) -> None:
    left_out = roles.checks()["any"][0]
    res = infra_run(tmp_path, ["haproxy"], "--role=haproxy", "-k", f"not {left_out}")
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"not passed: {left_out}" in res.stdout


def test_a_machine_with_another_role_fails_before_any_check(tmp_path: Path) -> None:
    res = infra_run(tmp_path, ["prosody"], "--role=haproxy")
    assert res.returncode == pytest.ExitCode.USAGE_ERROR, res.stdout + res.stderr
    assert "lb: its pillar gives it the roles ['prosody'], expected ['haproxy']" in res.stderr
    assert " passed" not in res.stdout


def test_a_role_without_checks_fails_before_any_check(tmp_path: Path) -> None:
    """Without --role the pillar's roles are checked: one the suite has no checks for
    would otherwise leave only the "any" checks, which every machine passes."""
    res = infra_run(tmp_path, ["mailserver"])
    assert res.returncode == pytest.ExitCode.USAGE_ERROR, res.stdout + res.stderr
    assert "no checks for role(s) ['mailserver']" in res.stderr


def test_every_role_of_the_lab_has_checks() -> None:
    from lab import manifest

    lab_roles = {m["role"] for m in manifest.load()["machines"].values()}
    assert lab_roles == set(roles.KNOWN) - {"any"}
    by_role = roles.checks()
    assert all(by_role[role] for role in roles.KNOWN), by_role


@pytest.mark.parametrize(("source", "error"), [
    ("def test_x():\n    pass\n", "needs exactly one role mark"),
    ("import pytest\n@pytest.mark.role('mail')\ndef test_x():\n    pass\n",
     "needs exactly one role mark"),
    ("import pytest\n@pytest.mark.role('any')\n@pytest.mark.role('lb')\n"
     "def test_x():\n    pass\n", "needs exactly one role mark"),
    ("import pytest\n@pytest.mark.role('any')\n@pytest.mark.parametrize('a', [1, 2])\n"
     "def test_x(a):\n    pass\n", "cannot be counted"),
])  # fmt: skip
def test_a_check_that_cannot_be_counted_is_refused(tmp_path: Path, source: str,
                                                   error: str) -> None:
    (tmp_path / "test_made_up.py").write_text(source)
    with pytest.raises(roles.SuiteError, match=error):
        roles.checks(tmp_path)
