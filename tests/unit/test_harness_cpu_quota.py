"""lab/harness.limit_cpu: a machine's CPU quota lands in the cgroup that has the cpu
controller, v1 or v2, and a host without one is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import harness


def _group(root: Path, name: str, *files: str) -> Path:
    group = root / name
    group.mkdir()
    for f in files:
        (group / f).write_text("max\n")
    return group


def test_v1_quota_and_period_in_the_cpu_hierarchy(tmp_path: Path) -> None:
    unified = _group(tmp_path, "unified", "cgroup.procs")
    cpu = _group(tmp_path, "cpu", "cpu.cfs_quota_us", "cpu.cfs_period_us")
    harness.limit_cpu([unified, cpu], 25)
    assert (cpu / "cpu.cfs_period_us").read_text() == "100000"
    assert (cpu / "cpu.cfs_quota_us").read_text() == "25000"
    assert (unified / "cgroup.procs").read_text() == "max\n"


def test_v2_cpu_max(tmp_path: Path) -> None:
    group = _group(tmp_path, "machine", "cpu.max")
    harness.limit_cpu([group], 10)
    assert (group / "cpu.max").read_text() == "10000 100000"


def test_no_cpu_controller_is_an_error_naming_the_groups(tmp_path: Path) -> None:
    group = _group(tmp_path, "machine", "cgroup.procs")
    with pytest.raises(harness.HarnessError, match=r"XTLAB_CPU_QUOTA=25: no cgroup .*machine"):
        harness.limit_cpu([group], 25)
