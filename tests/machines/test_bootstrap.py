"""lab/bootstrap-salt.sh itself, on a fresh machine without Salt, offline.

The whole-lab vagrant test boots a CI box that already holds Salt, so the script
that a user's VM runs first is proven here, in every run: a machine of each
release with the harness's rootfs minus its Salt, no route off the lab bridge,
and the wheelhouse of lab/box/wheelhouse.sh in lab/state/wheelhouse as Vagrant's
rsync puts it.  Its PyPI branch runs in the hash-gated vagrant tests
(tests/vagrant/test_bootstrap_pypi.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest

from lab import harness, manifest

pytestmark = [pytest.mark.machines, pytest.mark.root]

CHECKOUT = harness.CHECKOUT
SRC = harness.CHECKOUT_IN_MACHINE
BOOTSTRAP = f"{SRC}/lab/bootstrap-salt.sh"
PINS = manifest.salt_pins()
UNSALTED = "rm -rf /opt/salt /etc/salt /usr/local/bin/salt-call /usr/local/bin/salt-minion"


@pytest.fixture(scope="module", params=harness.RELEASES)
def release(request: pytest.FixtureRequest, rootfs_builds: dict[str, Future[Path]]) -> str:
    name: str = request.param
    if name in rootfs_builds:
        rootfs_builds[name].result()
    return name


@pytest.fixture(scope="module")
def machine(release: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[harness.Machine]:
    """A booted machine without Salt whose lab/state holds the release's wheelhouse."""
    state = tmp_path_factory.mktemp(f"bootstrap-{release}")
    res = subprocess.run(["bash", str(CHECKOUT / "lab/box/wheelhouse.sh"), release, str(state)],
                         capture_output=True, text=True, timeout=900, check=False)
    assert res.returncode == 0, f"wheelhouse.sh {release}: {res.stderr[-3000:]}"
    m = harness.Machine(f"boot-{release}", release, f"{harness.SUBNET}.30", state)
    try:
        m.boot()
        m.run(UNSALTED)
        yield m
    finally:
        m.stop()


def bootstrap(m: harness.Machine, src: str = SRC) -> subprocess.CompletedProcess[str]:
    return m.run(["sh", BOOTSTRAP.replace(SRC, src, 1), "-c", f"{SRC}/lab"], check=False,
                 env={"XMPP_LAB_SRC": src}, timeout=600)


def test_installs_the_pinned_salt_from_the_wheelhouse_offline(machine: harness.Machine) -> None:
    # No way off the lab bridge: pip can only have used the wheelhouse.
    assert machine.run("ip route show default", check=False).stdout.strip() == ""
    res = bootstrap(machine)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "from the wheelhouse" in res.stdout
    version = PINS[0].split("==")[1]
    assert f"salt-call {version}" in res.stdout.splitlines()[-1]
    imports = machine.run(["/opt/salt/bin/python", "-c",
                           "import saltext.mysql, pymysql, salt.version; "
                           "print(salt.version.__version__)"], check=False)
    assert imports.returncode == 0, imports.stderr
    assert imports.stdout.strip() == version
    link = machine.run("readlink /usr/local/bin/salt-call").stdout.strip()
    assert link == "/opt/salt/bin/salt-call"
    assert machine.run("cat /etc/salt/minion").stdout == (CHECKOUT / "lab/minion").read_text()
    # Salt runs with the lab's minion config.
    ping = machine.run(["salt-call", "--local", "--out=json", "test.ping"], check=False)
    assert json.loads(ping.stdout) == {"local": True}, ping.stderr


def test_second_run_only_configures(machine: harness.Machine) -> None:
    res = bootstrap(machine)
    assert res.returncode == 0, res.stderr
    assert "Salt already installed" in res.stdout


def _source_copy(m: harness.Machine, manifest_json: str, drop: str = "") -> str:
    """A copy of the bootstrap's inputs in the machine, with another manifest and
    optionally a wheelhouse that lacks the wheels matching ``drop``."""
    src = "/root/bootstrap-src"
    m.run(f"rm -rf {src} && mkdir -p {src}/lab/state {src}/pillar/lab && "
          f"cp {SRC}/lab/bootstrap-salt.sh {SRC}/lab/manifest.py {src}/lab/ && "
          f"cp -r {SRC}/lab/state/wheelhouse {src}/lab/state/")
    m.run(f"cat > {src}/pillar/lab/manifest.json", input=manifest_json)
    if drop:
        m.run(f"rm {src}/lab/state/wheelhouse/*/{drop}")  # a glob of ours
    return src


def test_a_pin_the_wheelhouse_lacks_fails_clearly(machine: harness.Machine) -> None:
    raw = json.loads(manifest.MANIFEST.read_text())
    raw["lab"]["salt"]["version"] = "3008.999"
    res = bootstrap(machine, _source_copy(machine, json.dumps(raw)))
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()[-1]
    assert err.startswith("bootstrap-salt: error: the wheelhouse ")
    assert "No matching distribution found for salt==3008.999" in err
    assert "lab/box/wheelhouse.sh" in err


def test_a_missing_wheel_fails_clearly(machine: harness.Machine) -> None:
    res = bootstrap(machine, _source_copy(machine, manifest.MANIFEST.read_text(),
                                          drop="saltext*mysql-*.whl"))
    assert res.returncode == 1
    err = res.stderr.strip().splitlines()[-1]
    assert "No matching distribution found for saltext-mysql" in err
    # A failed install leaves no half venv behind for the next run to trust.
    assert machine.run("test -e /opt/salt", check=False).returncode != 0
