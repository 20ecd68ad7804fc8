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

ROOT = Path(__file__).resolve().parents[2]
MACHINES = ["prosody", "ejabberd1", "ejabberd2", "lb"]
SALT_CALL = ROOT / ".cache" / "salt-venv" / "bin" / "salt-call"


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


def test_addresses_come_only_from_the_network_pillar() -> None:
    code = [line for line in (ROOT / "Vagrantfile").read_text().splitlines()
            if not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"\d+\.\d+\.\d+\.\d+", line)]
    hosts = json.loads((ROOT / "pillar/lab/network.json").read_text())["lab"]["hosts"]
    assert sorted(hosts) == sorted(MACHINES)


def test_bootstrap_pins_match_the_projects_salt() -> None:
    """lab/bootstrap-salt.sh installs exactly the Salt the gates test with."""
    boot = (ROOT / "lab/bootstrap-salt.sh").read_text()
    pins = re.search(r'^PINS="(.*)"$', boot, re.M)
    assert pins
    setup = (ROOT / "tests/setup.d/20-salt.sh").read_text()
    gate_pins = set(re.search(r"^pins=\((.*)\)$", setup, re.M).group(1).split())  # type: ignore[union-attr]
    assert set(pins.group(1).split()) <= gate_pins
    assert "salt==3008.4" in pins.group(1).split()
    assert "bootstrap.saltproject.io" not in re.sub(r"#.*", "", boot)
    res = subprocess.run(["sh", "-n", str(ROOT / "lab/bootstrap-salt.sh")], check=False,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def minion_config(tmp: Path, state: Path) -> Path:
    """lab/minion with its /srv/xmpp-tool paths at this checkout, caches in tmp."""
    conf = tmp / "conf"
    conf.mkdir()
    text = (ROOT / "lab/minion").read_text()
    text = text.replace("/srv/xmpp-tool/lab/state", str(state))
    text = text.replace("/srv/xmpp-tool", str(ROOT))
    keep = [line for line in text.splitlines()
            if line.split(":", 1)[0] not in {"root_dir", "cachedir", "pki_dir", "log_file"}]
    run = tmp / "run"
    keep += [f"root_dir: {run}", f"cachedir: {run}/cache", f"pki_dir: {run}/pki",
             f"log_file: {run}/minion.log", f"sock_dir: {run}/sock"]
    (conf / "minion").write_text("\n".join(keep) + "\n")
    return conf


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
    conf = minion_config(tmp_path, state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SALT")}
    res = subprocess.run(
        [str(SALT_CALL), "--local", f"--config-dir={conf}", f"--id={machine}",
         "--out=json", "--log-level=quiet", "--retcode-passthrough", "pillar.items",
         "unmask=True"],
        capture_output=True, text=True, check=False, timeout=300, env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    pillar = json.loads(res.stdout)["local"]
    assert "_errors" not in pillar, pillar.get("_errors")
    hosts = json.loads((ROOT / "pillar/lab/network.json").read_text())["lab"]["hosts"]
    assert pillar["lab"]["hosts"][machine] == hosts[machine]
    assert pillar["roles"], pillar
