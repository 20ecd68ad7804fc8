"""bench/cpu.py: CPU per lab machine, generator and host, per message of a load run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cpu

CPU_STAT = "usage_usec 8502471\nuser_usec 5437475\nsystem_usec 3064995\n"


def test_cgroup_usage_reads_usage_usec() -> None:
    assert cpu.cgroup_usage(CPU_STAT) == pytest.approx(8.502471)


def test_cgroup_usage_without_the_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="usage_usec"):
        cpu.cgroup_usage("user_usec 1\n")


def test_host_times_counts_iowait_as_idle_and_steal_as_busy() -> None:
    tck = cpu.CLK_TCK
    # user nice system idle iowait irq softirq steal guest guest_nice
    line = f"cpu {tck} 0 {tck} {4 * tck} {tck} 0 0 {tck} {tck} 0\ncpu0 1 2 3\n"
    busy, total = cpu.host_times(line)
    assert busy == pytest.approx(3.0)  # user + system + steal; guest is inside user
    assert total == pytest.approx(8.0)


def test_breakdown_per_part_and_the_rest_of_the_host() -> None:
    before = cpu.Snapshot(wall=100.0, machines={"ejabberd1": 10.0, "lb": 1.0},
                          generator=2.0, host_busy=50.0, host_all=200.0)
    after = cpu.Snapshot(wall=110.0, machines={"ejabberd1": 18.0, "lb": 1.5},
                         generator=4.0, host_busy=66.0, host_all=220.0)
    out = cpu.breakdown(before, after, messages=1000)
    assert out["wall_s"] == 10.0
    assert out["cores"] == 2.0
    assert out["host_busy_pct"] == 80.0
    parts = out["parts"]
    assert parts["ejabberd1"] == {"cpu_s": 8.0, "core_pct": 80.0, "ms_per_msg": 8.0}
    assert parts["lb"]["ms_per_msg"] == 0.5
    assert parts["generator"]["cpu_s"] == 2.0
    assert parts["rest of host"]["cpu_s"] == 5.5  # 16 busy - 10.5 accounted for
    assert "ejabberd1 80.0% (8.0 ms/msg)" in cpu.describe(out)


def test_breakdown_of_a_run_without_messages_has_no_per_message_cost() -> None:
    snap = cpu.Snapshot(wall=1.0, machines={"lb": 1.0})
    out = cpu.breakdown(snap, cpu.Snapshot(wall=2.0, machines={"lb": 1.0}), messages=0)
    assert out["parts"]["lb"]["ms_per_msg"] is None


def test_take_reads_the_first_hierarchy_with_cpu_stat(tmp_path: Path) -> None:
    empty, unified = tmp_path / "systemd", tmp_path / "unified"
    empty.mkdir()
    unified.mkdir()
    (unified / "cpu.stat").write_text(CPU_STAT)
    snap = cpu.take({"ejabberd1": [empty, unified], "gone": [tmp_path / "nothing"]})
    assert snap.machines == {"ejabberd1": pytest.approx(8.502471)}
    assert snap.host_all > 0 and snap.generator > 0
