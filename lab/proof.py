"""The record that what `vagrant up` applies has run on real VMs.

A whole-lab vagrant test (tests/vagrant, marker ``vagrant``) that passes writes
``tests/vagrant/proof.json``: a hash over every file a VM boots or applies with
(:data:`INPUTS`), when and with what it ran, and how long each phase took.  CI
(``.ci/run``) recomputes the hash: when it matches the committed record, the
content was proven and CI says so in one line; otherwise CI runs the vagrant
tests itself.  So CLI-only changes never pay for a VM run, and a change to the
Vagrantfile, the bootstrap, the box, the states or the pillar lands only after
a real ``vagrant up`` of exactly that content.

    python3 -m lab.proof hash            # the content hash of this checkout
    python3 -m lab.proof check [RECORD]  # exit 0 + one line if RECORD proves it, else 1
    python3 -m lab.proof files           # the files the hash covers

Standard library only: ``.ci/run`` calls it before the project's venv exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORD = Path("tests/vagrant/proof.json")

# Everything a lab VM boots or applies with, and the tests that judge it
# (a path ending in "/" is a directory, taken whole).  The Salt pin lives in
# pillar/lab/manifest.json; lab/manifest.py reads it for the bootstrap.
INPUTS = (
    "Vagrantfile",
    "lab/bootstrap-salt.sh",
    "lab/box/",
    "lab/minion",
    "lab/secrets.py",
    "lab/manifest.py",
    "salt/",
    "pillar/",
    "tests/vagrant/",
    "tests/infra/",
)
# The record itself cannot be part of what it proves.
EXCLUDED = frozenset({RECORD.as_posix()})


class ProofError(Exception):
    """The record cannot be read or the checkout cannot be listed."""


def _covered(rel: str) -> bool:
    if rel in EXCLUDED or "__pycache__/" in rel or rel.endswith(".pyc"):
        return False
    return any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in INPUTS)


def files(root: Path = ROOT) -> list[str]:
    """The covered files: what a clone of this checkout has (tracked, plus new files
    git does not ignore), as the vagrant test copies it."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=root, capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ProofError(f"cannot list the files of {root} with git: {exc}") from exc
    names = {raw.decode() for raw in out.split(b"\0") if raw}
    return sorted(n for n in names if _covered(n) and (root / n).is_file())


def content_hash(root: Path = ROOT) -> str:
    """SHA-256 over the covered files' paths, executable bits and contents."""
    h = hashlib.sha256()
    for rel in files(root):
        path = root / rel
        data = path.read_bytes()
        mode = "x" if os.access(path, os.X_OK) else "-"
        h.update(f"{rel}\0{mode}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def load(record: Path) -> dict[str, Any]:
    try:
        data = json.loads(record.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ProofError(f"{record}: unreadable proof record: {exc}") from exc
    if not isinstance(data, dict):
        raise ProofError(f"{record}: not a JSON object")
    return data


def describe(rec: dict[str, Any]) -> str:
    """One line: when and how the recorded content was proven."""
    v = rec.get("versions", {})
    tests = rec.get("tests", {})
    d = rec.get("durations_s", {})
    return (
        f"vagrant path proven: content {str(rec.get('content_sha256'))[:12]} passed "
        f"{tests.get('passed', '?')} vagrant tests on {rec.get('proven', '?')} "
        f"(vagrant {v.get('vagrant', '?')}, vagrant-libvirt {v.get('vagrant-libvirt', '?')}, "
        f"libvirt {v.get('libvirt', '?')}, qemu {v.get('qemu', '?')} {v.get('accel', '')}; "
        f"up {d.get('up_s', '?')} s, whole test {d.get('total_s', '?')} s)"
    )


def check(record: Path, root: Path = ROOT) -> tuple[bool, str]:
    """Whether ``record`` proves this checkout's content, and a line saying why."""
    rec = load(record)
    now = content_hash(root)
    if not rec:
        return False, f"vagrant path not proven: no record {record} (content {now[:12]})"
    if rec.get("content_sha256") != now:
        return False, (
            f"vagrant path not proven: content {now[:12]} differs from the record's "
            f"{str(rec.get('content_sha256'))[:12]} ({rec.get('proven', '?')})"
        )
    return True, describe(rec)


def main(argv: list[str]) -> int:
    cmd = argv[0] if argv else "check"
    try:
        if cmd == "hash":
            print(content_hash())
            return 0
        if cmd == "files":
            print("\n".join(files()))
            return 0
        if cmd == "check":
            record = Path(argv[1]) if len(argv) > 1 else ROOT / RECORD
            ok, line = check(record)
            print(line)
            return 0 if ok else 1
    except ProofError as exc:
        print(f"lab.proof: {exc}", file=sys.stderr)
        return 2
    print("usage: python3 -m lab.proof hash | files | check [RECORD]", file=sys.stderr)
    return 64


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
