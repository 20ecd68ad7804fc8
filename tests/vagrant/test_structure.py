"""Fast checks of the Vagrant lab: `vagrant validate` with Debian's Vagrant, the
machines it defines, and every machine's pillar rendering with the lab's minion
config (no VM is started; nothing is written outside tmp)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab import manifest, saltlocal

ROOT = Path(__file__).resolve().parents[2]
LAB = manifest.load()
MACHINES = manifest.names(LAB)
SALT_CALL = saltlocal.SALT_CALL


def vagrant(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant missing: bash tests/setup.sh (tests/apt/vagrant.txt)")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("VAGRANT_", "XMPP_LAB_"))}
    full_env.update(VAGRANT_CHECKPOINT_DISABLE="1", VAGRANT_NO_COLOR="1", **env)
    return subprocess.run(["vagrant", *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, check=False, timeout=300)


def test_vagrant_validate_libvirt() -> None:
    res = vagrant("validate", VAGRANT_DEFAULT_PROVIDER="libvirt", XMPP_LAB_LIBVIRT_DRIVER="qemu")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


def test_vagrant_validate_virtualbox_without_virtualbox() -> None:
    """VirtualBox cannot be installed here, so its provider block is not checked
    (`--ignore-provider`); everything else (salt provisioner, networks, synced
    folder, triggers) is."""
    res = vagrant("validate", "--ignore-provider", VAGRANT_DEFAULT_PROVIDER="virtualbox")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "validated successfully" in res.stdout


def defined_machines(tmp: Path, **env: str) -> list[str]:
    """Machine names in definition order, from a copy of the Vagrantfile (so that
    `vagrant status` never creates .vagrant/ in the checkout)."""
    if not (tmp / "Vagrantfile").exists():
        shutil.copy(ROOT / "Vagrantfile", tmp / "Vagrantfile")
        shutil.copytree(ROOT / "pillar", tmp / "pillar")
    res = vagrant("status", "--machine-readable", cwd=tmp, VAGRANT_DEFAULT_PROVIDER="libvirt",
                  **env)
    assert res.returncode == 0, res.stdout + res.stderr
    names: list[str] = []
    for line in res.stdout.splitlines():
        fields = line.split(",")
        if len(fields) > 3 and fields[2] == "state" and fields[1] not in names:
            names.append(fields[1])
    return names


def test_machines_in_provisioning_order(tmp_path: Path) -> None:
    assert defined_machines(tmp_path) == MACHINES


def test_machine_subset_and_bad_names(tmp_path: Path) -> None:
    assert defined_machines(tmp_path, XMPP_LAB_MACHINES="lb,prosody") == ["prosody", "lb"]
    res = vagrant("validate", cwd=tmp_path, XMPP_LAB_MACHINES="prosody,nosuch")
    assert res.returncode != 0
    assert "unknown machine(s) in XMPP_LAB_MACHINES: nosuch" in res.stdout + res.stderr


def test_machines_and_addresses_come_only_from_the_manifest() -> None:
    code = [line for line in (ROOT / "Vagrantfile").read_text().splitlines()
            if not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"\d+\.\d+\.\d+\.\d+", line)]
    assert not [line for line in code if re.search(r"\b(prosody|ejabberd\d|lb)\b", line)]


def test_salt_is_pinned_in_the_manifest_only() -> None:
    """lab/bootstrap-salt.sh, the wheelhouse, the gates' venv and the harness install
    the Salt the manifest pins; no other file names its version."""
    pins = manifest.salt_pins(LAB)
    version = LAB["salt"]["version"]
    stamp = (ROOT / ".cache/salt-venv/.pins")
    if stamp.exists():  # the gates' venv (tests/setup.d/20-salt.sh) has exactly these
        assert set(pins) <= set(stamp.read_text().split())
    for script in ("lab/bootstrap-salt.sh", "lab/box/wheelhouse.sh", "tests/setup.d/20-salt.sh"):
        assert re.search(r"lab/manifest\.py\"? salt-pins", (ROOT / script).read_text()), script
    tracked = subprocess.run(["git", "grep", "-l", "-F", f"salt=={version}"], cwd=ROOT,
                             capture_output=True, text=True, check=False).stdout.split()
    assert not [f for f in tracked if not f.endswith(".md")], tracked
    boot = (ROOT / "lab/bootstrap-salt.sh").read_text()
    assert "bootstrap.saltproject.io" not in re.sub(r"#.*", "", boot)
    res = subprocess.run(["sh", "-n", str(ROOT / "lab/bootstrap-salt.sh")], check=False,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("machine", MACHINES)
def test_every_machines_pillar_renders(tmp_path: Path, machine: str) -> None:
    """What the salt provisioner's `salt-call --local --id MACHINE` will see."""
    if not SALT_CALL.exists():
        pytest.skip("no Salt venv: bash tests/setup.d/20-salt.sh")
    state = tmp_path / "state"
    gen = subprocess.run([sys.executable, "-I", str(ROOT / "lab/secrets.py"),
                          "--state-dir", str(state)], capture_output=True, text=True,
                         check=False, timeout=120)
    assert gen.returncode == 0, gen.stderr
    conf = saltlocal.config_dir(tmp_path / "conf", state)
    res = saltlocal.salt_call(conf, machine, "pillar.items", "unmask=True")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    pillar = json.loads(res.stdout)["local"]
    assert "_errors" not in pillar, pillar.get("_errors")
    assert pillar["lab"]["hosts"][machine] == LAB["hosts"][machine]
    assert pillar["roles"] == [LAB["machines"][machine]["role"]], pillar
