"""Where a load run's CPU goes: each lab machine, the generator, the rest of the host.

The harness puts every nspawn machine in its own cgroup (``lab.harness.machine_cgroups``),
whose ``cpu.stat`` counts all CPU its processes used (ejabberd's beam, haproxy, the
machine's systemd).  Read before and after a run, beside this process's own CPU
(the generator) and the host's ``/proc/stat``, the differences say how many CPU
milliseconds each part spent per message, and whether the host's cores were the limit.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Snapshot:
    """CPU seconds used so far: per machine, by this process, and the host's busy/all."""

    wall: float
    machines: dict[str, float] = field(default_factory=dict)
    generator: float = 0.0
    host_busy: float = 0.0
    host_all: float = 0.0


def cgroup_usage(text: str) -> float:
    """Seconds of CPU from a cgroup v2 ``cpu.stat`` (its ``usage_usec`` line)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise ValueError("cpu.stat has no usage_usec line")


def host_times(text: str) -> tuple[float, float]:
    """(busy, all) CPU seconds of the host from ``/proc/stat``'s first line.

    Idle and iowait are not busy; steal is (another guest had the core).
    """
    fields = text.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("/proc/stat does not start with the cpu line")
    ticks = [int(v) for v in fields[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: in user already]
    total = sum(ticks[:8])
    idle = ticks[3] + ticks[4]
    return (total - idle) / CLK_TCK, total / CLK_TCK


def take(cgroups: Mapping[str, Iterable[Path]]) -> Snapshot:
    """Read every machine's cgroup (the first hierarchy that has ``cpu.stat``)."""
    snap = Snapshot(wall=time.monotonic())
    for name, dirs in cgroups.items():
        for d in dirs:
            stat = d / "cpu.stat"
            if stat.exists():
                snap.machines[name] = cgroup_usage(stat.read_text())
                break
    usage = resource.getrusage(resource.RUSAGE_SELF)
    snap.generator = usage.ru_utime + usage.ru_stime
    snap.host_busy, snap.host_all = host_times(Path("/proc/stat").read_text())
    return snap


def breakdown(before: Snapshot, after: Snapshot, messages: int) -> dict[str, Any]:
    """What each part used between two snapshots, in seconds, % of one core, ms/message."""
    wall = after.wall - before.wall
    parts = {n: after.machines[n] - before.machines[n]
             for n in after.machines if n in before.machines}
    parts["generator"] = after.generator - before.generator
    busy = after.host_busy - before.host_busy
    cores = (after.host_all - before.host_all) / wall if wall > 0 else 0.0
    parts["rest of host"] = max(0.0, busy - sum(parts.values()))

    def row(seconds: float) -> dict[str, float | None]:
        return {"cpu_s": round(seconds, 2),
                "core_pct": round(100 * seconds / wall, 1) if wall > 0 else None,
                "ms_per_msg": round(1000 * seconds / messages, 3) if messages else None}

    return {"wall_s": round(wall, 1), "cores": round(cores, 2),
            "host_busy_pct": round(100 * busy / (after.host_all - before.host_all), 1)
            if after.host_all > before.host_all else None,
            "parts": {n: row(s) for n, s in parts.items()}}


def describe(cpu: Mapping[str, Any]) -> str:
    parts = ", ".join(f"{n} {p['core_pct']}% ({p['ms_per_msg']} ms/msg)"
                      for n, p in cpu["parts"].items())
    return (f"  cpu over {cpu['wall_s']} s on {cpu['cores']} cores, host "
            f"{cpu['host_busy_pct']}% busy: {parts}")
