"""kitchen.yml, checked for structure (Test Kitchen itself is not installed here).

The file is ERB + YAML, so it is rendered by Ruby's own ERB and YAML (Ruby comes
with Debian's vagrant package, tests/apt/vagrant.txt), for both providers; then
every path and pillar it names must exist in the checkout.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab import manifest

pytestmark = pytest.mark.ruby  # kitchen.yml is rendered by ruby (ERB + YAML), as Test Kitchen does

ROOT = Path(__file__).resolve().parents[1]
IN_VM = "/srv/xmpp-tool"
RENDER = (
    'require "erb"; require "yaml"; require "json"; text = File.read(ARGV[0]); '
    'text = ERB.new(text).result if ARGV[1] == "erb"; '
    "puts JSON.generate(YAML.safe_load(text))"
)


def ruby_yaml(path: Path, erb: bool, provider: str = "virtualbox", cwd: Path = ROOT) -> Any:
    """YAML (after ERB) parsed by Ruby, as Test Kitchen and Vagrant's Ruby do (Kitchen
    renders kitchen.yml in the project directory: it reads the manifest from there)."""
    env = {**os.environ, "VAGRANT_DEFAULT_PROVIDER": provider}
    res = subprocess.run(["ruby", "-e", RENDER, str(path), "erb" if erb else "plain"],
                         env=env, capture_output=True, text=True, check=False, timeout=60,
                         cwd=cwd)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@functools.cache
def render(provider: str) -> dict[str, Any]:
    data: dict[str, Any] = ruby_yaml(ROOT / "kitchen.yml", erb=True, provider=provider)
    return data


@pytest.fixture(scope="module", params=["virtualbox", "libvirt"])
def kitchen(request: pytest.FixtureRequest) -> dict[str, Any]:
    return render(request.param)


def checkout_path(path_in_vm: str) -> Path:
    assert path_in_vm.startswith(IN_VM + "/"), path_in_vm
    return ROOT / path_in_vm[len(IN_VM) + 1:]


def test_driver_is_vagrant_with_the_checkout_at_srv(kitchen: dict[str, Any]) -> None:
    driver = kitchen["driver"]
    assert driver["name"] == "vagrant"
    targets = [folder[1] for folder in driver["synced_folders"]]
    assert targets == [IN_VM]
    assert driver["synced_folders"][0][0] == "."


def test_libvirt_provider_has_no_graphics_ports() -> None:
    driver = render("libvirt")["driver"]
    assert driver["provider"] == "libvirt"
    assert driver["customize"]["graphics_type"] == "none"
    assert "graphics_type" not in render("virtualbox")["driver"]["customize"]


def test_salt_solo_never_uses_the_dead_bootstrap_url(kitchen: dict[str, Any]) -> None:
    prov = kitchen["provisioner"]
    assert prov["name"] == "salt_solo"
    assert prov["salt_install"] == "bootstrap"
    # A local file (kitchen-salt copies it), which is the lab's own bootstrap...
    assert (ROOT / prov["salt_bootstrap_url"]).is_file()
    assert prov["salt_bootstrap_url"] == "lab/bootstrap-salt.sh"
    # ...and it has already run from the synced checkout before kitchen-salt looks.
    assert prov["install_after_init_environment"] is True
    script = re.search(r"(/srv/xmpp-tool/\S+\.sh)", prov["init_environment"])
    assert script and checkout_path(script.group(1)).is_file()
    conf_dir = re.search(r"-c (\S+)", prov["init_environment"])
    assert conf_dir and (checkout_path(conf_dir.group(1)) / "minion").is_file()
    assert prov["require_chef"] is False
    text = (ROOT / "kitchen.yml").read_text()
    assert not re.search(r"^[^#]*(saltproject\.io|saltstack\.(com|org))", text, re.M)
    # The version kitchen-salt checks is the one the manifest pins (and the bootstrap
    # installs).
    assert f"salt=={prov['salt_version']}" in manifest.salt_pins()


def test_minion_config_is_the_labs(kitchen: dict[str, Any]) -> None:
    prov = kitchen["provisioner"]
    assert prov["salt_minion_config_template"] == "lab/minion"
    minion = (ROOT / "lab/minion").read_text()
    for root in re.findall(r"^\s+- (/srv/xmpp-tool/\S+)", minion, re.M):
        if root.endswith("/lab/state"):
            continue  # generated per checkout by lab/secrets.py
        assert checkout_path(root).is_dir(), root


def test_one_suite_per_machine_of_the_manifest(kitchen: dict[str, Any]) -> None:
    """Suites are the manifest's machines in its order (what pillar each gets is
    checked by tests/vagrant/test_structure.py and the Salt gates)."""
    lab = manifest.load()
    suites = kitchen["suites"]
    assert [s["name"] for s in suites] == manifest.names(lab)
    for suite in suites:
        name = suite["name"]
        assert suite["provisioner"]["salt_minion_id"] == name
        assert suite["driver"]["vm_hostname"] == name
        nets = suite["driver"]["network"]
        assert nets == [["private_network", {"ip": lab["hosts"][name]}]]
    assert (ROOT / "lab/secrets.py").is_file()


def test_verifier_runs_the_infra_suite_over_ssh(kitchen: dict[str, Any]) -> None:
    verifier = kitchen["verifier"]
    assert verifier["name"] == "shell"
    cmd = verifier["command"]
    assert "tests/infra" in cmd and (ROOT / "tests/infra/conftest.py").is_file()
    assert '--hosts="ssh://${KITCHEN_USERNAME}@${KITCHEN_HOSTNAME}:${KITCHEN_PORT}"' in cmd
    assert "--minion-id=\"${KITCHEN_SUITE}\"" in cmd
    assert cmd.startswith(".venv/bin/python -m pytest")
    conftest = (ROOT / "tests/infra/conftest.py").read_text()
    for opt in re.findall(r"(--[a-z-]+)=", cmd):
        if opt in {"--hosts", "--ssh-identity-file", "--ssh-extra-args"}:
            continue  # testinfra's own options
        assert f'"{opt}"' in conftest, f"{opt} is not an option of tests/infra"


def test_platforms_are_the_supported_debian_releases(kitchen: dict[str, Any]) -> None:
    boxes = {p["name"]: p["driver"]["box"] for p in kitchen["platforms"]}
    assert boxes == {"debian-13": "debian/trixie64", "debian-12": "debian/bookworm64"}
