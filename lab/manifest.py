"""The lab manifest (pillar/lab/manifest.json): the one list of the lab's machines.

Python's reading of it, shared by lab/secrets.py, the nspawn harness, bench/ and the
tests.  The Vagrantfile, kitchen.yml (Ruby) and the pillar (Jinja, pillar/lab/map.jinja)
read the same file and apply the same rules:

* the lab = the manifest deep-merged with ``<state dir>/overrides.sls`` when that exists
  (JSON, a subset of YAML, so Salt reads it as pillar too);
* machines are in the manifest's order; ``after`` names machines or roles (a role
  stands for every machine with it) whose provisioning must be finished first;
* ``cluster`` groups machines; a cluster's first member is its seed;
* ``entries`` names the machine clients connect to for each service (domain).

Standard library only: the Vagrantfile runs lab/secrets.py with any host Python.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MANIFEST = Path(__file__).resolve().parent.parent / "pillar" / "lab" / "manifest.json"


class ManifestError(Exception):
    """The manifest or an overrides file is unreadable or inconsistent."""


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_json_sls(path: Path) -> dict[str, Any]:
    """Read a JSON file that may start with '#' comment lines (our .sls files)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not JSON (line {exc.lineno}): {exc.msg}") from None
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: top level must be a mapping")
    return data


def load(state_dir: Path | None = None, path: Path = MANIFEST) -> dict[str, Any]:
    """The lab (the manifest's ``lab`` key, plus overrides), with the derived keys the
    pillar also has: ``hosts`` (machine -> address) and ``cluster`` (name -> members)."""
    data = read_json_sls(path)
    if state_dir is not None and (state_dir / "overrides.sls").exists():
        data = deep_merge(data, read_json_sls(state_dir / "overrides.sls"))
    lab = data.get("lab")
    machines = lab.get("machines") if isinstance(lab, dict) else None
    if not isinstance(machines, dict) or not machines:
        raise ManifestError(f"{path}: no lab:machines")
    lab = dict(lab)  # type: ignore[arg-type]
    lab["hosts"] = {}
    lab["cluster"] = {}
    for name, machine in machines.items():
        if not isinstance(machine, dict) or not machine.get("address") or not machine.get("role"):
            raise ManifestError(f"lab:machines:{name} needs a role and an address")
        lab["hosts"][name] = machine["address"]
        if machine.get("cluster"):
            lab["cluster"].setdefault(machine["cluster"], []).append(name)
    for name in machines:
        after(lab, name)  # unknown names fail here, not halfway through a provisioning
    return lab


def names(lab: dict[str, Any]) -> list[str]:
    """Every machine, in the manifest's order."""
    return list(lab["machines"])


def with_role(lab: dict[str, Any], role: str) -> list[str]:
    return [n for n, m in lab["machines"].items() if m["role"] == role]


def after(lab: dict[str, Any], name: str) -> list[str]:
    """The machines ``name`` must be provisioned after (roles expanded)."""
    out: list[str] = []
    for dep in lab["machines"][name].get("after", []):
        found = [n for n, m in lab["machines"].items() if dep in (n, m["role"]) and n != name]
        if not found:
            raise ManifestError(f"lab:machines:{name}:after: no machine or role {dep!r}")
        out += [n for n in found if n not in out]
    return out


def waves(lab: dict[str, Any], wanted: list[str] | None = None) -> list[list[str]]:
    """Machines grouped for provisioning: each wave only after the ones before it
    (dependencies outside ``wanted`` are ignored, as when a subset is brought up)."""
    todo = [n for n in names(lab) if wanted is None or n in wanted]
    out: list[list[str]] = []
    while todo:
        wave = [n for n in todo if all(d not in todo for d in after(lab, n))]
        if not wave:
            raise ManifestError(f"lab:machines: dependency cycle among {', '.join(todo)}")
        out.append(wave)
        todo = [n for n in todo if n not in wave]
    return out


def entry(lab: dict[str, Any], service: str) -> str | None:
    """The machine clients of ``service`` connect to (None: not in this lab)."""
    name = lab.get("entries", {}).get(service)
    return name if name in lab["machines"] else None


def salt_pins(lab: dict[str, Any] | None = None) -> list[str]:
    """pip requirements of the lab's Salt: the one place its version is pinned."""
    salt = (lab or load())["salt"]
    return [f"salt=={salt['version']}", *salt.get("extensions", [])]


def with_machine(raw: dict[str, Any], name: str, like: str, address: str) -> dict[str, Any]:
    """A copy of the manifest ``raw`` (the file's JSON) with one more machine, a copy
    of machine ``like`` at ``address``, placed right after it (e.g. a third ejabberd
    node: the cluster, the balancer, the order follow from the manifest alone)."""
    machines: dict[str, Any] = {}
    for key, machine in raw["lab"]["machines"].items():
        machines[key] = machine
        if key == like:
            machines[name] = {**machine, "address": address}
    if name not in machines:
        raise ManifestError(f"no machine {like!r} to copy")
    return {**raw, "lab": {**raw["lab"], "machines": machines}}


def main(argv: list[str] | None = None) -> int:
    """``python3 lab/manifest.py salt-pins``: the pins, one a line (for shell scripts
    that install Salt: lab/bootstrap-salt.sh, lab/box/wheelhouse.sh, tests/setup.d)."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if args != ["salt-pins"]:
        print("usage: python3 lab/manifest.py salt-pins", file=sys.stderr)
        return 64
    try:
        print("\n".join(salt_pins(load())))
    except (ManifestError, KeyError) as exc:
        print(f"lab/manifest.py: {exc}", file=sys.stderr)
        return 65
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
