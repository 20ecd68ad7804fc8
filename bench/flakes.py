#!/usr/bin/env python3
"""Find timing flakes in provisioning before a user's first `vagrant up` does.

**vagrant**: the whole-lab vagrant test, ``--runs`` times in a row, each from a fresh
``git clone`` of this checkout's HEAD (as CI and a new user start): the README's test
set-up (``bash tests/setup.sh``), then ``pytest -m vagrant tests/vagrant``.  Stops at
the first failure unless ``--keep-going``; a run's clone (with its Vagrant logs under
``.cache/vagrant-test/`` and, after a pass, its ``tests/vagrant/proof.json``) is kept
under ``--workdir`` until the next invocation.

**nspawn**: the nspawn lab (``lab.harness``) booted and applied from scratch ``--runs``
times in a row with every machine's CPU capped at ``--cpu-quota`` percent of one core
(a cgroup CPU quota, ``XTLAB_CPU_QUOTA``): a slow VM's timing in minutes instead of a
TCG run.  Each run: fresh secrets, boot, apply every machine in the manifest's order,
then apply again, which must change nothing.  Its own lab prefix and subnet
(``XTLAB_PREFIX``/``XTLAB_SUBNET``, defaults ``xtflk``/``10.213.59``) keep it apart
from a running lab.

Both print one line per run (result, wall time, ``/proc/loadavg`` before and after)
and, with ``--json FILE``, write them as JSON.  Root only.

    python3 -m bench.flakes vagrant --runs 3
    python3 -m bench.flakes nspawn --runs 5 --cpu-quota 25 --release trixie

Exit codes: 0 every run passed; 1 a run failed; 64 usage; 77 not root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def vagrant_run(index: int, workdir: Path, timeout: float) -> dict[str, Any]:
    clone = workdir / f"clone-{index}"
    shutil.rmtree(clone, ignore_errors=True)
    rec: dict[str, Any] = {"run": index, "clone": str(clone), "load_before": loadavg()}
    t0 = time.monotonic()
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    rec["commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                                   capture_output=True, text=True, check=True).stdout.strip()
    try:
        setup = subprocess.run(["bash", "tests/setup.sh"], cwd=clone, capture_output=True,
                               text=True, check=False, timeout=timeout)
        setup_rc, setup_out = setup.returncode, setup.stdout + setup.stderr
    except subprocess.TimeoutExpired:
        setup_rc, setup_out = -1, f"timed out after {timeout:.0f} s"
    rec["setup_s"] = round(time.monotonic() - t0, 1)
    if setup_rc != 0:
        rec.update(ok=False, why=f"tests/setup.sh exited {setup_rc}", output=tail(setup_out))
        return rec
    t1 = time.monotonic()
    env = dict(os.environ, XMPP_TOOL_NO_SKIP="1")
    try:
        test = subprocess.run([".venv/bin/python", "-m", "pytest", "-m", "vagrant",
                               "tests/vagrant"], cwd=clone, env=env, capture_output=True,
                              text=True, check=False, timeout=timeout)
        rc, out = test.returncode, test.stdout + test.stderr
    except subprocess.TimeoutExpired as exc:
        so_far = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        rc, out = -1, f"{so_far}\ntimed out after {timeout:.0f} s"
    rec["test_s"] = round(time.monotonic() - t1, 1)
    rec["load_after"] = loadavg()
    summary = [line for line in out.splitlines() if " passed" in line or " failed" in line
               or " error" in line]
    rec["summary"] = summary[-1].strip("= ") if summary else ""
    rec["ok"] = rc == 0
    if rc != 0:
        rec["why"] = f"pytest exited {rc}"
        rec["output"] = tail(out, 40)
    proof = clone / "tests" / "vagrant" / "proof.json"
    if rc == 0 and proof.exists():
        rec["proof"] = str(proof)
    return rec


def nspawn_run(index: int, release: str, quota: int) -> dict[str, Any]:
    # Imported here, not at the top: the harness reads XTLAB_* when it is imported, and
    # main() sets them first.
    from lab import harness

    rec: dict[str, Any] = {"run": index, "release": release, "cpu_quota_percent": quota,
                           "load_before": loadavg()}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xtflk-state-") as tmp:
        state = Path(tmp)
        harness.make_state_dir(state)
        try:
            with harness.lab(release, state) as the_lab:
                rec["boot_s"] = round(time.monotonic() - t0, 1)
                first = the_lab.apply_all()
                rec["first_apply"] = {n: r.summary() for n, r in first.items()}
                failed = {n: r.describe_failures() for n, r in first.items() if not r.ok}
                if not failed:
                    again = the_lab.apply_all()
                    rec["reapply"] = {n: r.summary() for n, r in again.items()}
                    failed = {n: r.describe_failures() for n, r in again.items() if not r.ok}
                    changed = {n: r.describe_changes() for n, r in again.items() if r.changed}
                    if changed and not failed:
                        failed = {n: f"re-apply changed: {c}" for n, c in changed.items()}
        except harness.HarnessError as exc:
            failed = {"harness": str(exc)}
    rec["wall_s"] = round(time.monotonic() - t0, 1)
    rec["load_after"] = loadavg()
    rec["ok"] = not failed
    if failed:
        rec["why"] = failed
    return rec


def line(rec: dict[str, Any]) -> str:
    took = rec.get("wall_s") or round(rec.get("setup_s", 0) + rec.get("test_s", 0), 1)
    what = "passed" if rec["ok"] else f"FAILED ({rec.get('why')})"
    extra = f" [{rec['summary']}]" if rec.get("summary") else ""
    return (f"run {rec['run']}: {what} in {took} s{extra}; "
            f"load {rec['load_before']} -> {rec.get('load_after', '?')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m bench.flakes",
                                 description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vagrant", help="the whole-lab vagrant test from fresh clones")
    v.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "flakes")
    v.add_argument("--timeout", type=float, default=4800.0, help="seconds per step")
    n = sub.add_parser("nspawn", help="the nspawn lab applied from scratch under a CPU quota")
    n.add_argument("--release", choices=("trixie", "bookworm"), default="trixie")
    n.add_argument("--cpu-quota", type=int, default=25, metavar="PERCENT",
                   help="each machine's CPU, in percent of one core (default 25)")
    for p in (v, n):
        p.add_argument("--runs", type=int, default=3)
        p.add_argument("--keep-going", action="store_true")
        p.add_argument("--json", type=Path, metavar="FILE")
    ns = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("flakes: must run as root", file=sys.stderr)
        return 77
    if ns.runs < 1 or (ns.cmd == "nspawn" and not 1 <= ns.cpu_quota <= 100):
        print("flakes: --runs must be >= 1 and --cpu-quota 1..100", file=sys.stderr)
        return 64
    if ns.cmd == "nspawn":
        os.environ.setdefault("XTLAB_PREFIX", "xtflk")
        os.environ.setdefault("XTLAB_SUBNET", "10.213.59")
        os.environ["XTLAB_CPU_QUOTA"] = str(ns.cpu_quota)
    else:
        ns.workdir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    for i in range(1, ns.runs + 1):
        if ns.cmd == "vagrant":
            rec = vagrant_run(i, ns.workdir, ns.timeout)
        else:
            rec = nspawn_run(i, ns.release, ns.cpu_quota)
        records.append(rec)
        print(line(rec), flush=True)
        if not rec["ok"] and rec.get("output"):
            print(rec["output"], flush=True)
        if ns.json:
            ns.json.write_text(json.dumps(records, indent=2) + "\n")
        if not rec["ok"] and not ns.keep_going:
            break
    passed = sum(r["ok"] for r in records)
    print(f"{passed} passed, {len(records) - passed} failed")
    return 0 if passed == ns.runs else 1


if __name__ == "__main__":
    sys.exit(main())
