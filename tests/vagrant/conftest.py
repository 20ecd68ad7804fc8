"""Writes tests/vagrant/proof.json (lab/proof.py) after a whole-lab vagrant run in
which every vagrant test passed: the content hash taken before the run (and found
unchanged after it), when, with which Vagrant/libvirt/qemu, per-phase durations
(.cache/vagrant-test/timings.json) and the test count.

No record is written for a partial run: tests deselected, skipped or failed, a
subset of machines (XMPP_LAB_TEST_MACHINES), or inputs edited during the run.
XMPP_LAB_WRITE_PROOF=0 turns it off.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab import manifest, proof

ROOT = Path(__file__).resolve().parents[2]
TIMINGS = ROOT / ".cache" / "vagrant-test" / "timings.json"


class _Tally:
    def __init__(self) -> None:
        self.hash = ""
        self.load: tuple[float, ...] = ()
        self.vagrant_items = 0
        self.passed = 0
        self.bad = 0


_TALLY = _Tally()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # (Not pytest_sessionstart: a conftest below the rootdir may load after it.)
    _TALLY.vagrant_items = sum(1 for i in items if i.get_closest_marker("vagrant"))
    if not _TALLY.vagrant_items:
        return
    try:
        _TALLY.hash = proof.content_hash(ROOT)
    except proof.ProofError:
        _TALLY.hash = ""
    _TALLY.load = tuple(round(x, 2) for x in os.getloadavg())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "vagrant" not in report.keywords:
        return
    if report.when == "call" and report.passed:
        _TALLY.passed += 1
    elif report.failed or report.skipped:
        _TALLY.bad += 1


def _version(cmd: list[str], pattern: str) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                             check=False).stdout
    except OSError:
        return "?"
    m = re.search(pattern, out)
    return m.group(1) if m else "?"


def versions() -> dict[str, str]:
    env = {**os.environ, "VAGRANT_CHECKPOINT_DISABLE": "1",
           "VAGRANT_HOME": str(ROOT / ".cache" / "vagrant-home")}
    plugins = subprocess.run(["vagrant", "plugin", "list"], capture_output=True, text=True,
                             timeout=300, check=False, env=env).stdout
    m = re.search(r"vagrant-libvirt \(([^,)]+)", plugins)
    return {
        "vagrant": _version(["vagrant", "--version"], r"Vagrant (\S+)"),
        "vagrant-libvirt": m.group(1) if m else "?",
        "libvirt": _version(["libvirtd", "--version"], r"(\d+\.\d+\.\d+)"),
        "qemu": _version(["qemu-system-x86_64", "--version"], r"version (\S+)"),
        "accel": "tcg",
    }


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    t = _TALLY
    if os.environ.get("XMPP_LAB_WRITE_PROOF") == "0" or not t.hash:
        return
    if exitstatus != 0 or t.bad or not t.vagrant_items or t.passed != t.vagrant_items:
        return
    whole = list(manifest.names(manifest.load()))
    subset = [m for m in os.environ.get("XMPP_LAB_TEST_MACHINES", "").split(",") if m]
    if subset and subset != whole:
        return
    # Every vagrant test of tests/vagrant, not a -k selection of them.
    collected = {Path(str(i.fspath)).name for i in session.items}
    if session.config.getoption("keyword") or not {
            "test_vagrant_up.py", "test_bootstrap_pypi.py"} <= collected:
        return
    try:
        if proof.content_hash(ROOT) != t.hash:
            print("\nlab.proof: inputs changed during the run; no proof record written")
            return
    except proof.ProofError:
        return
    timings: dict[str, Any] = {}
    if TIMINGS.exists():
        timings = json.loads(TIMINGS.read_text())
    record = {
        "content_sha256": t.hash,
        "proven": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "XMPP_TOOL_NO_SKIP=1 .venv/bin/python -m pytest -m vagrant tests/vagrant",
        "tests": {"passed": t.passed, "machines": whole},
        "versions": versions(),
        "host": {"cpus": os.cpu_count(), "load_average_before": list(t.load),
                 "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "durations_s": timings,
    }
    (ROOT / proof.RECORD).write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nlab.proof: wrote {proof.RECORD}: {proof.describe(record)}")
