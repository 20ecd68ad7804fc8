"""A real `vagrant up` of the lab on libvirt/qemu (TCG), as a user runs it.

1. builds a wheelhouse of the pinned Salt for Debian 13's Python
   (lab/box/wheelhouse.sh) and from it the CI box (`lab/box/build.sh trixie
   --preload`, cached by its inputs): lab/bootstrap-salt.sh has installed Salt
   in it, and the formulas' packages lie in apt's cache (the bootstrap itself is
   proven without Salt in tests/machines/test_bootstrap.py, its PyPI branch in
   test_bootstrap_pypi.py);
2. starts virtlogd/libvirtd by hand, the `default` network and pool
   (tests/vagrant/libvirt-host.sh);
3. copies the checkout to a temporary directory (its own .vagrant and lab/state,
   so a user's lab is never touched) and runs `vagrant up --provider=libvirt`
   with the salt provisioner and lab/bootstrap-salt.sh exactly as committed;
4. runs the testinfra suite (tests/infra) against every VM over SSH
   (`vagrant ssh-config`, all VMs at once), and `xmpp-tool` send + unread from the host to
   prosody and through lb to the ejabberd cluster, TLS verified against the
   generated lab CA;
5. `vagrant provision NAME` again, every machine at once: Salt reports no
   changes on any machine;
6. `vagrant destroy -f`, also after a failure, and stops the libvirt daemons it
   started (the box's volume stays in the pool as a cache).

Which machines: XMPP_LAB_TEST_MACHINES (default: the whole lab). Timings go to
.cache/vagrant-test/timings.json and the Vagrant logs to .cache/vagrant-test/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab import manifest
from tests.infra import roles

pytestmark = [pytest.mark.vagrant, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]
XMPP_TOOL = ROOT / ".venv" / "bin" / "xmpp-tool"
PYTHON = ROOT / ".venv" / "bin" / "python"
OUT = ROOT / ".cache" / "vagrant-test"
ALL_MACHINES = tuple(manifest.names(manifest.load()))
MACHINES = tuple(
    m for m in os.environ.get("XMPP_LAB_TEST_MACHINES", ",".join(ALL_MACHINES)).split(",") if m
)


def role_of(machine: str) -> str:
    return str(manifest.load()["machines"][machine]["role"])


# The whole lab under TCG on 2 cores took 2,883 s; leave room for a slower host.
UP_TIMEOUT = int(os.environ.get("XMPP_LAB_TEST_UP_TIMEOUT", "4200"))


def _missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root (libvirtd, box build)"
    for tool in ("vagrant", "virsh", "qemu-system-x86_64", "mmdebstrap", "extlinux"):
        if shutil.which(tool) is None:
            return f"{tool} missing: bash tests/setup.sh (tests/apt/vagrant.txt)"
    return None


@dataclass
class Lab:
    workdir: Path
    env: dict[str, str]
    hosts: dict[str, str]
    accounts: dict[str, dict[str, Any]]
    up_log: str
    timings: dict[str, Any] = field(default_factory=dict)

    @property
    def ca(self) -> Path:
        return self.workdir / "lab" / "state" / "ca.crt"

    def vagrant(self, *args: str, timeout: float = 600,
                log: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_vagrant(self.workdir, self.env, list(args), timeout, log)


def run_vagrant(workdir: Path, env: dict[str, str], args: list[str], timeout: float,
                log: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run vagrant, keeping its output (with per-line times) in .cache/vagrant-test."""
    start = time.monotonic()
    proc = subprocess.Popen(["vagrant", *args], cwd=workdir, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    logf = (OUT / log).open("w") if log else None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if logf:
                logf.write(f"{time.monotonic() - start:8.1f} {line}")
                logf.flush()
            if time.monotonic() - start > timeout:
                proc.kill()
                lines.append(f"\n[test] vagrant {' '.join(args)}: killed after {timeout} s\n")
                break
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        if logf:
            logf.close()
    return subprocess.CompletedProcess(["vagrant", *args], rc, "".join(lines), "")


def sh(*cmd: str, timeout: float = 1800, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                         check=False)
    assert res.returncode == 0, f"{' '.join(cmd)}: rc={res.returncode}\n{res.stderr[-4000:]}"
    return res.stdout


def copy_checkout(dest: Path) -> None:
    """The files a user's clone has (tracked + new, not ignored), nothing else."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = Path(raw.decode())
        src = ROOT / rel
        if not src.is_file() or rel.parts[0] in {".cache", ".venv"}:
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def machine_durations(log_path: Path) -> dict[str, dict[str, float]]:
    """From the timestamped up log: per machine, seconds to 'booted' and to the end
    of its salt provisioning (the last line it printed)."""
    out: dict[str, dict[str, float]] = {}
    for line in log_path.read_text().splitlines():
        m = re.match(r"\s*([\d.]+) (?:==> )?\s*(\w+): (.*)", line)
        if not m or m.group(2) not in ALL_MACHINES:
            continue
        t, name, text = float(m.group(1)), m.group(2), m.group(3)
        entry = out.setdefault(name, {})
        if "Machine booted and ready" in text:
            entry["booted_s"] = t
        if "Running provisioner: salt-install " in text:
            entry["salt_install_start_s"] = t
        if "Running provisioner: salt (" in text:
            entry["highstate_start_s"] = t
        if "Running provisioner: provisioned " in text:
            entry["provisioned_s"] = t
        entry["last_line_s"] = t
    return out


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = _missing()
    if reason:
        pytest.skip(reason)
    OUT.mkdir(parents=True, exist_ok=True)
    timings: dict[str, Any] = {"machines": list(MACHINES)}

    started = time.monotonic()
    t = time.monotonic()
    wheels = sh("bash", str(ROOT / "lab/box/wheelhouse.sh"), "trixie",
                str(OUT / "wheelhouse")).strip().splitlines()[-1]
    timings["wheelhouse_s"] = round(time.monotonic() - t, 1)
    t = time.monotonic()
    box = Path(sh("bash", str(ROOT / "lab/box/build.sh"), "trixie", "--preload",
                  wheels).strip().splitlines()[-1])
    timings["box_build_s"] = round(time.monotonic() - t, 1)
    box_name = f"xmpp-lab/{box.parent.name}"  # trixie-ci-<hash of the box's inputs>

    t = time.monotonic()
    sh("bash", str(ROOT / "tests/vagrant/libvirt-host.sh"), "start", timeout=120)
    timings["libvirt_start_s"] = round(time.monotonic() - t, 1)

    workdir = Path(tempfile.mkdtemp(prefix="xlab", dir="/var/tmp"))
    copy_checkout(workdir)

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VAGRANT_", "XMPP_LAB_"))},
        "VAGRANT_HOME": str(ROOT / ".cache" / "vagrant-home"),
        "VAGRANT_DEFAULT_PROVIDER": "libvirt",
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
        "XMPP_LAB_BOX": box_name,
        "XMPP_LAB_LIBVIRT_DRIVER": "qemu",
        "XMPP_LAB_HOST_CA": "1",
        "XMPP_LAB_MACHINES": ",".join(MACHINES),
    }
    boxes = sh("vagrant", "box", "list", env=env, timeout=120)
    if box_name not in boxes:
        t = time.monotonic()
        sh("vagrant", "box", "add", "--name", box_name, str(box), env=env, timeout=600)
        timings["box_add_s"] = round(time.monotonic() - t, 1)

    up_log = OUT / "up.log"
    lab = Lab(workdir, env, {}, {}, "", timings)
    try:
        t = time.monotonic()
        up = run_vagrant(workdir, env, ["up", "--provider=libvirt"], UP_TIMEOUT, "up.log")
        timings["up_s"] = round(time.monotonic() - t, 1)
        timings["up_per_machine"] = machine_durations(up_log)
        lab.up_log = up.stdout
        assert up.returncode == 0, f"vagrant up failed (log: {up_log}):\n{up.stdout[-8000:]}"
        spec = manifest.load(workdir / "lab/state", workdir / "pillar/lab/manifest.json")
        lab.hosts = spec["hosts"]
        client = tomllib.loads((workdir / "lab/state/client.toml").read_text())
        lab.accounts = client["accounts"]
        yield lab
    finally:
        t = time.monotonic()
        down = run_vagrant(workdir, env, ["destroy", "-f"], 600, "destroy.log")
        timings["destroy_s"] = round(time.monotonic() - t, 1)
        timings["total_s"] = round(time.monotonic() - started, 1)
        (OUT / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
        print(f"\nvagrant lab timings: {json.dumps(timings)}")
        shutil.rmtree(workdir, ignore_errors=True)
        # Stops libvirtd/virtlogd only if libvirt-host.sh started them (by PID).
        subprocess.run(["bash", str(ROOT / "tests/vagrant/libvirt-host.sh"), "stop"],
                       check=False, timeout=120)
        assert down.returncode == 0, f"vagrant destroy failed:\n{down.stdout[-4000:]}"


@pytest.fixture(scope="module")
def ssh_config(lab: Lab) -> Path:
    res = lab.vagrant("ssh-config", timeout=300)
    assert res.returncode == 0, res.stdout[-3000:]
    path = lab.workdir / "ssh-config"
    path.write_text(res.stdout)
    return path


def test_up_brought_up_every_machine(lab: Lab) -> None:
    res = lab.vagrant("status", "--machine-readable", timeout=120)
    states = {line.split(",")[1]: line.split(",")[3] for line in res.stdout.splitlines()
              if line.count(",") >= 3 and line.split(",")[2] == "state"}
    assert states == dict.fromkeys(MACHINES, "running")
    # The salt provisioner ran through our bootstrap (never the upstream download).
    assert "bootstrap.saltproject.io" not in lab.up_log
    assert lab.up_log.count("bootstrap-salt: ") >= len(MACHINES)
    # The CI box carries Salt: the bootstrap found it on every machine.
    assert lab.up_log.count("bootstrap-salt: Salt already installed") >= len(MACHINES)


@pytest.fixture(scope="module")
def infra_runs(lab: Lab, ssh_config: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """tests/infra, unchanged, against every VM over SSH, all at once (each run
    mostly waits for its emulated VM)."""
    t = time.monotonic()
    procs = {
        machine: subprocess.Popen(
            [str(PYTHON), "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests/infra",
             f"--hosts=ssh://{machine}", f"--ssh-config={ssh_config}", "--sudo",
             f"--minion-id={machine}", f"--role={role_of(machine)}"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "XMPP_TOOL_NO_SKIP": "1"},
        )
        for machine in MACHINES
    }
    runs = {}
    for machine, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=1200)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        runs[machine] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    lab.timings["infra_s"] = round(time.monotonic() - t, 1)
    return runs


@pytest.mark.parametrize("machine", MACHINES)
def test_infra_suite_over_ssh(infra_runs: dict[str, subprocess.CompletedProcess[str]],
                              machine: str) -> None:
    res = infra_runs[machine]
    due = len(roles.expected([role_of(machine)]))
    assert res.returncode == 0, f"{res.stdout[-6000:]}\n{res.stderr[-2000:]}"
    assert f"tests/infra: {machine}: {due} of {due} checks passed" in res.stdout
    assert re.search(rf"^{due} passed, \d+ deselected in ", res.stdout, re.M), res.stdout[-2000:]


def xmpp_tool(lab: Lab, account: str, server: str, *args: str) -> subprocess.CompletedProcess[str]:
    acct = lab.accounts[account]
    return subprocess.run(
        [str(XMPP_TOOL), "-C", str(lab.ca), "-s", server, "-u", acct["jid"], *args],
        env={**os.environ, "XMPP_TOOL_PASSWORD": acct["password"]},
        capture_output=True, text=True, timeout=120, check=False,
    )


@pytest.mark.parametrize("service", ["prosody", "ejabberd"])
def test_send_and_unread_from_the_host(lab: Lab, service: str) -> None:
    spec = manifest.load()
    via = manifest.entry(spec, service) or ""
    if via not in MACHINES or not set(spec["cluster"].get(service, [via])) & set(MACHINES):
        pytest.skip(f"{via} not in XMPP_LAB_TEST_MACHINES")
    server = f"{lab.hosts[via]}:5222"
    body = f"vagrant lab {service} {uuid.uuid4().hex[:12]}"
    sent = xmpp_tool(lab, f"alice@{service}", server, "send",
                     lab.accounts[f"bob@{service}"]["jid"], body)
    assert sent.returncode == 0, sent.stderr
    got = xmpp_tool(lab, f"bob@{service}", server, "-J", "unread")
    assert got.returncode == 0, got.stderr
    msgs = [json.loads(line) for line in got.stdout.splitlines() if line.strip()]
    mine = [m for m in msgs if m["body"] == body]
    assert len(mine) == 1, msgs
    assert mine[0]["from"].split("/")[0] == lab.accounts[f"alice@{service}"]["jid"]


def salt_output_by_machine(output: str) -> dict[str, list[str]]:
    """Vagrant prints the salt provisioner's output without the machine prefix;
    each unprefixed line belongs to the machine of the last `==> NAME:` line."""
    per: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        m = re.match(r"\s*==> (\w+): ", line)
        if m:
            current = m.group(1)
            continue
        if current:
            per.setdefault(current, []).append(line)
    return per


def test_reprovision_changes_nothing(lab: Lab) -> None:
    # `vagrant provision NAME` for every machine at once, as docs/lab.md shows for the
    # cluster nodes (one `vagrant provision` would take the machines one by one).
    t = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(MACHINES)) as pool:
        runs = dict(zip(MACHINES, pool.map(
            lambda m: lab.vagrant("provision", m, timeout=1800, log=f"provision-{m}.log"),
            MACHINES), strict=True))
    lab.timings["reprovision_s"] = round(time.monotonic() - t, 1)
    for machine, res in runs.items():
        assert res.returncode == 0, f"{machine}:\n{res.stdout[-8000:]}"
        mine = salt_output_by_machine(res.stdout).get(machine, [])
        summary = [line for line in mine if re.search(r"^\s*(Succeeded|Failed):", line)]
        assert len(summary) == 2, f"{machine}: no Salt summary in\n" + "\n".join(mine[-40:])
        assert not any("changed=" in line for line in summary), "\n".join(mine[-80:])
        assert re.search(r"Failed:\s+0$", summary[1]), "\n".join(mine[-80:])
