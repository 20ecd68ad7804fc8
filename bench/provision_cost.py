"""What provisioning with Salt costs over a bare `apt-get install` (issue 5 part 3).

Per release and role, on fresh nspawn machines of the harness (tests/machines):
  salt first   first `state.apply` on a fresh machine (wall time)
  pkg step     the part of it spent in pkg states (one apt transaction with
               lab/minion's state_aggregate)
  salt again   the re-apply (wall time; must change nothing)
  apt          `apt-get install` of exactly the packages that first apply installed
               (names from Salt's JSON), on another fresh machine of the same kind,
               from the same pre-staged apt cache
Goals: salt first <= 1.3 x apt, salt again <= 2 s (quiet host).

Roles are measured on their machine alone: prosody, ejabberd1 (the cluster's first
node), lb.  Run as root:

    .venv/bin/python -m bench.provision_cost [--release trixie] [--role prosody] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lab import harness, manifest

# One machine of each role of the lab manifest (e.g. prosody, ejabberd1, lb).
ROLES = tuple(dict.fromkeys(manifest.with_role(harness.LAB, m["role"])[0]
                            for m in harness.LAB["machines"].values()))


def installed_packages(result: harness.ApplyResult) -> list[str]:
    """Package names a first apply installed (pkg.installed changes)."""
    names: set[str] = set()
    for sid, state in result.states.items():
        if sid.startswith("pkg_|-") and sid.endswith("_|-installed"):
            changes = state.get("changes") or {}
            names.update(n for n, v in changes.items()
                         if isinstance(v, dict) and v.get("new") and not v.get("old"))
    return sorted(names)


def pkg_seconds(result: harness.ApplyResult) -> float:
    """Seconds the apply spent in pkg states (their own durations, ms in Salt's JSON)."""
    return sum(float(state.get("duration") or 0) for sid, state in result.states.items()
               if sid.startswith("pkg_|-")) / 1000


def measure(release: str, role: str, state_dir: Path) -> dict[str, Any]:
    m = harness.Machine(role, release, harness.ADDRESSES[role], state_dir)
    try:
        m.boot()
        first = m.apply()
        again = m.apply()
    finally:
        m.stop()
    if not first.ok or not again.ok:
        raise SystemExit(f"{release}/{role}: apply failed:\n{first.describe_failures()}\n"
                         f"{again.describe_failures()}")
    pkgs = installed_packages(first)
    b = harness.Machine(role, release, harness.ADDRESSES[role], state_dir)
    try:
        b.boot()
        t0 = time.monotonic()
        b.run(["apt-get", "install", "-y", "-q", *pkgs],
              env={"DEBIAN_FRONTEND": "noninteractive"})
        apt = time.monotonic() - t0
    finally:
        b.stop()
    return {"release": release, "role": role, "packages": len(pkgs),
            "salt_first_s": round(first.seconds, 1), "apt_s": round(apt, 1),
            "pkg_step_s": round(pkg_seconds(first), 1),
            "ratio": round(first.seconds / apt, 2) if apt else None,
            "salt_again_s": round(again.seconds, 1), "again_changed": len(again.changed)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--release", action="append", choices=harness.RELEASES)
    ap.add_argument("--role", action="append", choices=ROLES)
    ap.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    ns = ap.parse_args()
    releases = ns.release or list(harness.RELEASES)
    roles = ns.role or list(ROLES)
    harness.install_cleanup_handlers()
    harness.down()
    harness.build_all(releases)
    print(f"# load average before: {Path('/proc/loadavg').read_text().strip()}",
          file=sys.stderr)
    if not ns.json:
        print(f"{'release':9} {'role':10} {'pkgs':>4} {'apt s':>7} {'salt 1st s':>10} "
              f"{'ratio':>6} {'pkg step s':>10} {'re-apply s':>10} {'changed':>7}")
    with tempfile.TemporaryDirectory(prefix="xtlab-bench-") as td:
        state_dir = harness.make_state_dir(Path(td))
        for release in releases:
            for role in roles:
                row = measure(release, role, state_dir)
                if ns.json:
                    print(json.dumps(row), flush=True)
                else:
                    print(f"{release:9} {role:10} {row['packages']:4} {row['apt_s']:7.1f} "
                          f"{row['salt_first_s']:10.1f} {row['ratio']:6.2f} "
                          f"{row['pkg_step_s']:10.1f} "
                          f"{row['salt_again_s']:10.1f} {row['again_changed']:7}", flush=True)
    harness.down()
    print(f"# load average after: {Path('/proc/loadavg').read_text().strip()}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
