"""systemd-nspawn machine harness for the lab (issue 3).

Builds a cached Debian rootfs per release (mmdebstrap, Salt in /opt/salt, the
packages of every role pre-staged in apt's cache), boots one machine per minion
id on an overlayfs copy of it, joins the machines through a bridge that lives in
a network namespace of its own (plus one veth from the host), applies the Salt
states masterless, and tears everything down again -- also after a failed or
interrupted run (``down`` cleans leftovers by name and is idempotent).

Machines have no network beyond the private bridge: no NAT, no DNS.  Everything
they install comes from the apt cache filled when the rootfs was built.

Usage by hand (as root)::

    python -m lab.harness up --release trixie prosody
    python -m lab.harness apply prosody
    python -m lab.harness run prosody -- systemctl status prosody
    python -m lab.harness down
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from lab import manifest

CHECKOUT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("XTLAB_CACHE") or CHECKOUT / ".cache" / "machines")
ROOTFS_DIR = CACHE / "rootfs"

# Every kernel object the harness creates carries this prefix, so `down` can
# find leftovers of an interrupted run.  Another prefix and subnet (environment
# XTLAB_PREFIX, XTLAB_SUBNET="10.213.57") give a second lab that coexists.
PREFIX = os.environ.get("XTLAB_PREFIX", "xtlab")
RUN_DIR = CACHE / ("run" if PREFIX == "xtlab" else f"run-{PREFIX}")  # `down` empties it
STATE_DIR = RUN_DIR / "state"  # default state dir for `up`/`apply` by hand
APPLY_LOG = CACHE / "apply.log"  # one line per state.apply: what took how long
APPLY_TIMEOUT = 900.0  # seconds for one state.apply
BRIDGE_NS = f"{PREFIX}-br"
BRIDGE = "br0"
HOST_IF = f"{PREFIX}0"  # host side of the host<->bridge veth (root netns)

# The lab's machines, addresses and provisioning order come from the lab manifest
# (pillar/lab/manifest.json, lab/manifest.py).  The harness moves the addresses into
# its own /24 (same last octet) and says so in overrides.sls, so the machines cannot
# collide with a real 192.168.56.0/24 host-only network.
SUBNET = os.environ.get("XTLAB_SUBNET", "10.213.56")
HOST_ADDR = f"{SUBNET}.1"


def lab_addresses(lab: dict[str, Any]) -> dict[str, str]:
    """Every machine of ``lab`` at its address moved into the harness's subnet."""
    return {name: f"{SUBNET}.{str(ip).rsplit('.', 1)[1]}" for name, ip in lab["hosts"].items()}


LAB = manifest.load()
ADDRESSES = lab_addresses(LAB)

MIRRORS = {
    "trixie": [
        "deb http://deb.debian.org/debian trixie main",
        "deb http://deb.debian.org/debian trixie-updates main",
        "deb http://deb.debian.org/debian-security trixie-security main",
    ],
    "bookworm": [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ],
}
RELEASES = tuple(MIRRORS)

# Installed in the rootfs.
BASE_PACKAGES = [
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "python3", "python3-venv",
    "ca-certificates", "iproute2", "iputils-ping", "procps", "netbase", "less",
    "lsb-release", "openssl", "sudo", "net-tools",
]
# Only to build Salt's timelib inside the rootfs; purged afterwards.
BUILD_PACKAGES = ["gcc", "libc6-dev", "python3-dev"]
# Downloaded into apt's cache (not installed): what the formulas install, read from
# their `pkgs:` lists in salt/*/parameters/defaults.yaml, so the rootfs (whose hash
# covers this list) follows the states.
FORMULA_PARAMETERS = CHECKOUT / "salt"


# pip packages in /opt/salt: the lab's Salt as pinned in the manifest, and testinfra
# so tests/infra runs inside a machine with --hosts=local:// (pins as in the host's .venv).
PIP_PACKAGES = [*manifest.salt_pins(LAB), "pytest-testinfra==10.2.2", "pytest==9.2.0"]

MACHINE_PATH = "/opt/salt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHECKOUT_IN_MACHINE = "/srv/xmpp-tool"

# Runs inside mmdebstrap's customize phase; $1 is the rootfs.
CUSTOMIZE = r"""
set -eu
root="$1" uvcache="$2"
run() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
          PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
          DEBIAN_FRONTEND=noninteractive "$@"; }
phase() { echo "[customize $(date +%T)] $*" >&2; }
run update-ca-certificates >/dev/null 2>&1
phase "salt venv"
run python3 -m venv /opt/salt
# uv (copied in from the host's cache by the harness) downloads in parallel: pip took
# 4-6 minutes for Salt's ~100 packages through this network, uv about one.  Its cache
# is the host's .cache/machines/uv-cache, shared by parallel and later builds.
mkdir -p "$root/var/cache/uv"
mount --bind "$uvcache" "$root/var/cache/uv"
trap 'umount "$root/var/cache/uv"' EXIT
# timelib's generated parser takes a minute to compile at -O2; its speed is irrelevant here.
run env CFLAGS="-O0 -g0" SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    UV_CACHE_DIR=/var/cache/uv /usr/local/bin/uv pip install -q --python /opt/salt/bin/python @PIP@
umount "$root/var/cache/uv"; trap - EXIT
rmdir "$root/var/cache/uv"; rm -f "$root/usr/local/bin/uv"
ln -sf /opt/salt/bin/salt-call "$root/usr/local/bin/salt-call"
phase "purge compiler, pre-stage role packages"
run apt-get purge -y -q --autoremove @BUILD@ >/dev/null
run apt-get install -y -q --download-only @ROLES@ >/dev/null
phase done
echo machine >"$root/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/machine-id"
# No DNS in the lab (names come from /etc/hosts, Salt's job).
: >"$root/etc/resolv.conf"
"""

_lock = threading.Lock()


class HarnessError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[harness {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*args: str, check: bool = True, capture: bool = False,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(args), check=False, text=True, input=input,
                         stdout=subprocess.PIPE if capture else None,
                         stderr=subprocess.PIPE if capture else None)
    if check and res.returncode != 0:
        err = (res.stderr or "").strip()
        raise HarnessError(f"{shlex.join(args)} exited {res.returncode}: {err}")
    return res


# --------------------------------------------------------------------------- rootfs

def all_role_packages() -> list[str]:
    """The formulas' packages (:func:`formula_packages`) that the base rootfs lacks."""
    return sorted(set(formula_packages()) - set(BASE_PACKAGES))


def formula_packages() -> list[str]:
    """Every `pkgs:` item of the formulas' parameters (a YAML block list)."""
    pkgs: set[str] = set()
    for defaults in sorted(FORMULA_PARAMETERS.glob("*/parameters/*.yaml")):
        lines = defaults.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != "pkgs:":
                continue
            indent = len(line) - len(line.lstrip())
            for item in lines[i + 1:]:
                m = re.match(r"(\s*)- +([a-z0-9][a-z0-9.+-]*)\s*$", item)
                if not m or len(m.group(1)) <= indent:
                    break
                pkgs.add(m.group(2))
    return sorted(pkgs)


def host_ca_certs() -> list[Path]:
    return sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


UV_VERSION = "0.13.9"
UV_DIR = CACHE / f"uv-{UV_VERSION}"
UV_CACHE = CACHE / "uv-cache"


def uv_binary() -> Path:
    """uv for the rootfs builds, pip-installed once into .cache/machines."""
    uv = UV_DIR / "bin" / "uv"
    with _lock:
        if uv.exists():
            return uv
        tmp = UV_DIR.with_name(UV_DIR.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        sh(sys.executable, "-m", "pip", "install", "-q", "--target", str(tmp),
           f"uv=={UV_VERSION}")
        tmp.rename(UV_DIR)
        return uv


def customize_script() -> str:
    return (CUSTOMIZE.replace("@PIP@", " ".join(shlex.quote(p) for p in PIP_PACKAGES))
            .replace("@BUILD@", " ".join(BUILD_PACKAGES))
            .replace("@ROLES@", " ".join(all_role_packages())))


def rootfs_key(release: str) -> str:
    """Hash of everything that goes into the rootfs of ``release``."""
    h = hashlib.sha256()
    for part in (release, UV_VERSION, *MIRRORS[release], *BASE_PACKAGES, *BUILD_PACKAGES,
                 *all_role_packages(), *PIP_PACKAGES, customize_script()):
        h.update(part.encode() + b"\0")
    for cert in host_ca_certs():
        h.update(cert.name.encode() + b"\0" + cert.read_bytes())
    return h.hexdigest()[:16]


def rootfs_path(release: str) -> Path:
    return ROOTFS_DIR / f"{release}-{rootfs_key(release)}"


def build_rootfs(release: str) -> Path:
    """Return the cached rootfs of ``release``, building it if needed.

    A finished rootfs is never written to again (machines run on overlays); a
    build goes to ``*.tmp`` and is renamed when complete.
    """
    if release not in MIRRORS:
        raise HarnessError(f"unknown release {release!r} (known: {', '.join(RELEASES)})")
    final = rootfs_path(release)
    if (final / "etc" / "os-release").exists():
        return final
    ROOTFS_DIR.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(final.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    with tempfile.TemporaryDirectory(prefix="xtlab-build-") as td:
        hook = Path(td) / "customize.sh"
        hook.write_text(customize_script())
        certs = [str(c) for c in host_ca_certs()]
        copy_in = [f"copy-in {shlex.quote(str(uv_binary()))} /usr/local/bin/"]
        if certs:
            copy_in.append(f"copy-in {' '.join(map(shlex.quote, certs))} "
                           "/usr/local/share/ca-certificates/")
        UV_CACHE.mkdir(parents=True, exist_ok=True)
        cmd = [
            "mmdebstrap", "--variant=minbase", "--mode=root", "--format=directory",
            "--quiet",
            "--include=" + ",".join(BASE_PACKAGES + BUILD_PACKAGES),
            "--skip=cleanup/apt/lists,cleanup/apt/cache",
            "--aptopt=APT::Install-Recommends \"false\"",
            *[f"--customize-hook={c}" for c in copy_in],
            f"--customize-hook=sh {shlex.quote(str(hook))} \"$1\" {shlex.quote(str(UV_CACHE))}",
            release, str(tmp), *MIRRORS[release],
        ]
        log(f"building {release} rootfs -> {final.name}")
        t0 = time.monotonic()
        sh(*cmd)
        log(f"built {release} rootfs in {time.monotonic() - t0:.0f} s")
    tmp.rename(final)
    # Older builds of this release are stale: keep the cache small.
    for old in ROOTFS_DIR.glob(f"{release}-*"):
        if old != final and not old.name.endswith(".tmp"):
            shutil.rmtree(old, ignore_errors=True)
    return final


def build_all(releases: Iterable[str]) -> dict[str, Path]:
    """Build several releases at once: most of a build waits for the network."""
    with ThreadPoolExecutor() as pool:
        futures = {r: pool.submit(build_rootfs, r) for r in releases}
        return {r: f.result() for r, f in futures.items()}


# --------------------------------------------------------------------------- network

def _netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ensure_bridge() -> None:
    """The bridge namespace, its bridge, and the host's veth into it."""
    with _lock:
        if not _netns_exists(BRIDGE_NS):
            sh("ip", "netns", "add", BRIDGE_NS)
        ns = ("ip", "-n", BRIDGE_NS)
        sh(*ns, "link", "set", "lo", "up")
        if sh(*ns, "link", "show", BRIDGE, check=False, capture=True).returncode != 0:
            sh(*ns, "link", "add", BRIDGE, "type", "bridge")
        sh(*ns, "link", "set", BRIDGE, "up")
        if sh("ip", "link", "show", HOST_IF, check=False, capture=True).returncode != 0:
            sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", "vhost",
               "netns", BRIDGE_NS)
            sh("ip", "addr", "add", f"{HOST_ADDR}/24", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh(*ns, "link", "set", "vhost", "master", BRIDGE, "up")


def bridge_port(name: str) -> str:
    """The machine's veth on the bridge (in BRIDGE_NS); interface names are <= 15 bytes."""
    return f"v-{name}"[:15]


def add_machine_net(name: str, addr: str) -> str:
    """Create the machine's netns with one veth into the bridge; return its path."""
    ensure_bridge()
    ns = f"{PREFIX}-{name}"
    if _netns_exists(ns):
        sh("ip", "netns", "del", ns)
    sh("ip", "netns", "add", ns)
    outer = bridge_port(name)
    sh("ip", "-n", BRIDGE_NS, "link", "del", outer, check=False, capture=True)
    sh("ip", "-n", BRIDGE_NS, "link", "add", outer, "type", "veth", "peer", "name", "eth0",
       "netns", ns)
    sh("ip", "-n", BRIDGE_NS, "link", "set", outer, "master", BRIDGE, "up")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    return f"/run/netns/{ns}"


# --------------------------------------------------------------------------- machines

@dataclass
class Machine:
    name: str
    release: str
    addr: str
    state_dir: Path
    # Another lab manifest, bound over the checkout's inside the machine (a lab that
    # differs from the committed one, e.g. a third cluster node); None: the checkout's.
    manifest_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    pid: int | None = None  # the machine's systemd, in the host's PID namespace
    applies: list[ApplyResult] = field(default_factory=list)

    @property
    def dir(self) -> Path:
        return RUN_DIR / self.name

    @property
    def merged(self) -> Path:
        return self.dir / "merged"

    @property
    def logfile(self) -> Path:
        return self.dir / "console.log"

    # -- lifecycle
    def boot(self, timeout: float = 90.0) -> None:
        lower = build_rootfs(self.release)
        teardown_machine(self.name)
        for sub in ("upper", "work", "merged"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        sh("mount", "-t", "overlay", f"{PREFIX}-{self.name}", "-o",
           f"lowerdir={lower},upperdir={self.dir / 'upper'},workdir={self.dir / 'work'}",
           str(self.merged))
        (self.merged / "etc" / "hostname").write_text(self.name + "\n")
        netns = add_machine_net(self.name, self.addr)
        # lab/state must exist in the checkout as the mount point of the state
        # bind (the checkout itself is bound read-only, so nspawn can't create it).
        (CHECKOUT / "lab" / "state").mkdir(parents=True, exist_ok=True)
        cmd = [
            "systemd-nspawn", "-b", "--register=no", "--keep-unit", "--quiet",
            "-D", str(self.merged), f"--machine={self.name}",
            f"--network-namespace-path={netns}",
            # The network namespace is the machine's own: its firewall (nftables.service,
            # salt/firewall) needs CAP_NET_ADMIN there, as on a VM. nspawn grants it with
            # --private-network only, not with a namespace path.
            "--capability=CAP_NET_ADMIN",
            "--resolv-conf=off", "--timezone=off", "--link-journal=no",
            "--console=read-only",
            f"--bind-ro={CHECKOUT}:{CHECKOUT_IN_MACHINE}:norbind",
            f"--bind-ro={self.state_dir}:{CHECKOUT_IN_MACHINE}/lab/state:norbind",
        ]
        if self.manifest_path is not None:
            rel = manifest.MANIFEST.relative_to(CHECKOUT)
            cmd.append(f"--bind-ro={self.manifest_path}:{CHECKOUT_IN_MACHINE}/{rel}:norbind")
        groups = machine_cgroups(self.name)
        for group in groups:
            group.mkdir(exist_ok=True)
        if CPU_QUOTA:
            limit_cpu(groups, CPU_QUOTA)
        # The shell moves itself into the machine's cgroups, then becomes nspawn.
        cmd = ["sh", "-c", 'for g; do [ "$g" = -- ] && break; echo $$ >"$g/cgroup.procs"; '
               'shift; done; shift; exec "$@"', "sh", *map(str, groups), "--", *cmd]
        with open(self.logfile, "wb") as out:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        (self.dir / "nspawn.pid").write_text(str(self.proc.pid))
        _RUNNING[self.name] = self
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.name}: nspawn exited {self.proc.returncode}; "
                                   f"see {self.logfile}")
            if self.pid is None:
                self.pid = _container_init(self.proc.pid)
            if self.pid is not None:
                res = self.run(["systemctl", "is-system-running"], check=False)
                state = res.stdout.strip()
                if state in ("running", "degraded"):
                    if state == "degraded":
                        failed = self.run(["systemctl", "--failed", "--no-legend"],
                                          check=False).stdout.strip()
                        log(f"{self.name}: degraded: {failed}")
                    return
            time.sleep(0.2)
        raise HarnessError(f"{self.name}: not running after {timeout:.0f} s ({state!r})")

    def stop(self) -> None:
        teardown_machine(self.name)
        self.proc = None
        self.pid = None
        _RUNNING.pop(self.name, None)

    # -- exec
    def run(self, cmd: Sequence[str] | str, *, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (argv, or a shell string) inside the machine as root."""
        if self.pid is None:
            raise HarnessError(f"{self.name} is not running")
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        envv = [f"PATH={MACHINE_PATH}", "HOME=/root", "LANG=C.UTF-8", "TERM=dumb",
                *(f"{k}={v}" for k, v in (env or {}).items())]
        full = ["nsenter", "-t", str(self.pid), "-a", "--", "/usr/bin/env", "-i", *envv, *argv]
        res = subprocess.run(full, text=True, input=input, capture_output=True,
                             check=False, timeout=timeout)
        if check and res.returncode != 0:
            raise HarnessError(f"{self.name}: {shlex.join(argv)} exited {res.returncode}:\n"
                               f"{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
        return res

    # -- salt
    def apply(self, *args: str, config_dir: str = f"{CHECKOUT_IN_MACHINE}/lab") -> ApplyResult:
        """``salt-call --local state.apply`` with the lab's minion config (or another one
        in the machine, e.g. a formula tested on its own); parse the JSON."""
        cmd = ["salt-call", "--local", f"--config-dir={config_dir}",
               f"--id={self.name}", "--retcode-passthrough", "--out=json",
               "--log-level=warning", "state.apply", *args]
        t0 = time.monotonic()
        try:
            res = self.run(cmd, check=False, timeout=APPLY_TIMEOUT)
        except subprocess.TimeoutExpired as e:  # a hung state fails the run, not blocks CI
            res = subprocess.CompletedProcess(cmd, -1, "", f"timed out after {e.timeout} s")
        result = ApplyResult.parse(self.name, res, time.monotonic() - t0)
        self.applies.append(result)
        line = f"{self.release} {self.name}: {result.summary()}"
        log(line)
        with _lock, APPLY_LOG.open("a") as f:
            f.write(f"{time.strftime('%F %T')} {line}\n")
        return result


def _container_init(nspawn_pid: int) -> int | None:
    """PID (host namespace) of the machine's PID 1: the nspawn descendant whose
    innermost PID is 1."""
    todo = [nspawn_pid]
    while todo:
        pid = todo.pop()
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for c in children:
                try:
                    status = Path(f"/proc/{c}/status").read_text()
                except OSError:
                    continue
                m = re.search(r"^NSpid:\s+(.*)$", status, re.M)
                if m and m.group(1).split()[-1] == "1" and len(m.group(1).split()) > 1:
                    return int(c)
                todo.append(int(c))
    return None


@dataclass
class ApplyResult:
    machine: str
    returncode: int
    seconds: float
    states: dict[str, dict[str, Any]]
    errors: list[str]
    stderr: str

    @classmethod
    def parse(cls, machine: str, res: subprocess.CompletedProcess[str],
              seconds: float) -> ApplyResult:
        states: dict[str, dict[str, Any]] = {}
        errors: list[str] = []
        try:
            data = json.loads(res.stdout) if res.stdout.strip() else {}
            local = data.get("local", data)
        except (json.JSONDecodeError, AttributeError):
            local = None
            errors.append(f"unparsable output: {res.stdout[-2000:]}")
        if isinstance(local, dict):
            states = {k: v for k, v in local.items() if isinstance(v, dict)}
        elif isinstance(local, list):  # render errors come as a list of strings
            errors.extend(str(x) for x in local)
        elif local is not None:
            errors.append(str(local))
        return cls(machine, res.returncode, seconds, states, errors, res.stderr)

    @property
    def changed(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.states.items() if v.get("changes")}

    @property
    def failed(self) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.states.items() if v.get("result") is False}

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.errors and not self.failed and bool(self.states)

    def slowest(self, n: int = 3) -> list[tuple[str, float]]:
        """The n slowest states: (state id, seconds)."""
        durations = [(st.get("__id__", sid), float(st.get("duration") or 0) / 1000)
                     for sid, st in self.states.items()]
        return sorted(durations, key=lambda d: d[1], reverse=True)[:n]

    def summary(self) -> str:
        slow = ", ".join(f"{sid} {sec:.1f}" for sid, sec in self.slowest())
        return (f"rc={self.returncode} states={len(self.states)} changed={len(self.changed)} "
                f"failed={len(self.failed)} errors={len(self.errors)} {self.seconds:.1f} s "
                f"(slowest: {slow})")

    def describe_failures(self) -> str:
        lines = [self.summary(), *self.errors]
        for sid, st in self.failed.items():
            lines.append(f"FAILED {sid}: {st.get('comment')}")
            # A failed cmd.run says why on its stderr, which the comment leaves out.
            changes = st.get("changes")
            why = changes.get("stderr") if isinstance(changes, dict) else None
            if why:
                lines.append(f"  stderr: {why.strip()[-1000:]}")
        if not self.states and self.stderr:
            lines.append(self.stderr[-3000:])
        return "\n".join(lines)

    def describe_changes(self) -> str:
        return "\n".join(f"{sid}: {json.dumps(st.get('changes'))[:500]}"
                         for sid, st in self.changed.items())


# --------------------------------------------------------------------------- state dir

def overrides_yaml(addresses: dict[str, str] | None = None) -> str:
    """Pillar that makes the lab fit the harness: no apt refresh (machines have
    no archive, only the pre-staged cache) and the harness's subnet
    (keys: pillar/README.md of the lab)."""
    machines = {n: {"address": a} for n, a in (addresses or ADDRESSES).items()}
    data = {"lab": {"pkg_refresh": False,
                    "network": {"cidr": f"{SUBNET}.0/24"},
                    "machines": machines}}
    # JSON is YAML: no YAML library needed on the host.
    return "# written by lab/harness.py\n" + json.dumps(data, indent=2) + "\n"


def make_state_dir(path: Path, generate: bool = True,
                   manifest_path: Path | None = None) -> Path:
    """overrides.sls, then secrets/CA/client config by the lab's own generator
    (which reads the overrides, so client.toml has the harness's addresses)."""
    path.mkdir(parents=True, exist_ok=True)
    addresses = lab_addresses(manifest.load(path=manifest_path)) if manifest_path else None
    (path / "overrides.sls").write_text(overrides_yaml(addresses))
    if generate:
        extra = ["--manifest", str(manifest_path)] if manifest_path else []
        sh("python3", str(CHECKOUT / "lab" / "secrets.py"), "--state-dir", str(path), *extra)
    return path


# --------------------------------------------------------------------------- teardown

_RUNNING: dict[str, Machine] = {}


def _nspawn_pids(name: str | None = None) -> list[int]:
    """nspawn processes this harness started (their -D is under RUN_DIR)."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0].endswith(b"systemd-nspawn"):
            continue
        want = str(RUN_DIR / name / "merged") if name else str(RUN_DIR) + "/"
        if any(a.decode(errors="replace").startswith(want) for a in argv):
            pids.append(int(p.name))
    return pids


def _mounts_under(prefix: Path) -> list[str]:
    out = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == str(prefix) or target.startswith(str(prefix) + "/"):
            out.append(target)
    return sorted(out, key=len, reverse=True)


def _wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    left = list(pids)
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        left = [p for p in left if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if left:
            time.sleep(0.1)
    return left


def _zombie(pid: int) -> bool:
    try:
        return " Z " in Path(f"/proc/{pid}/stat").read_text().split(")", 1)[1][:4]
    except OSError:
        return True


# Without systemd on the host every nspawn starts in the root cgroup and puts its
# payload in /payload: all machines (of every lab on the host) would share
# /payload/system.slice/<unit>, so one machine's systemd waits for, and at its stop
# timeout kills, another machine's service processes. Each machine gets its own
# cgroup (in the hierarchies nspawn uses) before nspawn starts.
# The v1 cpu hierarchy last: it holds the CPU quota (XTLAB_CPU_QUOTA), and readers of
# cpu.stat (bench/cpu.py) take the first hierarchy that has one, a v2 one.
CGROUP_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup/systemd"),
                Path("/sys/fs/cgroup/cpu"))
# Each machine's CPU in percent of one core (a cgroup CPU quota), e.g. 25 to see a
# slow VM's timing (bench/flakes.py nspawn); unset or empty: no limit.
CPU_QUOTA = int(os.environ.get("XTLAB_CPU_QUOTA") or 0)
CPU_PERIOD_US = 100_000


def machine_cgroups(name: str) -> list[Path]:
    roots = [r for r in CGROUP_ROOTS if (r / "cgroup.procs").exists()]
    if not roots and Path("/sys/fs/cgroup/cgroup.controllers").exists():  # pure cgroup v2
        roots = [Path("/sys/fs/cgroup")]
    return [r / f"{PREFIX}-{name}" for r in roots]


def limit_cpu(groups: Iterable[Path], percent: int) -> None:
    """Cap the machine's CPU at ``percent`` of one core, in whichever of its cgroups has
    the cpu controller (v1 ``cpu.cfs_quota_us``, v2 ``cpu.max``)."""
    quota = CPU_PERIOD_US * percent // 100
    for group in groups:
        if (group / "cpu.cfs_quota_us").exists():
            (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
            return
        if (group / "cpu.max").exists():
            (group / "cpu.max").write_text(f"{quota} {CPU_PERIOD_US}")
            return
    raise HarnessError(f"XTLAB_CPU_QUOTA={percent}: no cgroup with a cpu controller "
                       f"among {', '.join(map(str, groups))}")


def remove_cgroups(name: str) -> None:
    """Empty cgroups of the machine, deepest first (what nspawn left, then its own)."""
    for top in machine_cgroups(name):
        if not top.exists():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()),
                      key=lambda p: len(p.parts), reverse=True)
        for d in [*dirs, top]:
            with contextlib.suppress(OSError):
                d.rmdir()


def teardown_machine(name: str, timeout: float = 20.0) -> None:
    pids = _nspawn_pids(name)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in _wait_gone(pids, timeout):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _wait_gone(pids, 5)
    m = _RUNNING.pop(name, None)
    if m and m.proc:
        with contextlib.suppress(Exception):
            m.proc.wait(timeout=5)
    for target in _mounts_under(RUN_DIR / name):
        sh("umount", "-l", target, check=False, capture=True)
    ns = f"{PREFIX}-{name}"
    if _netns_exists(ns):
        sh("ip", "netns", "del", ns, check=False, capture=True)
    if _netns_exists(BRIDGE_NS):
        sh("ip", "-n", BRIDGE_NS, "link", "del", f"v-{name}"[:15], check=False, capture=True)
    shutil.rmtree(RUN_DIR / name, ignore_errors=True)
    remove_cgroups(name)


def down() -> None:
    """Remove every machine, overlay, netns and veth of the harness (idempotent)."""
    names = set(_RUNNING)
    if RUN_DIR.exists():
        names |= {p.name for p in RUN_DIR.iterdir() if (p / "merged").exists()}
    names |= {n.removeprefix(PREFIX + "-") for n in _list_netns()
              if n.startswith(PREFIX + "-") and n != BRIDGE_NS}
    for pid in _nspawn_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for name in sorted(names):
        teardown_machine(name)
    for target in _mounts_under(RUN_DIR):
        sh("umount", "-l", target, check=False, capture=True)
    if _netns_exists(BRIDGE_NS):
        sh("ip", "netns", "del", BRIDGE_NS, check=False, capture=True)
    sh("ip", "link", "del", HOST_IF, check=False, capture=True)


def _list_netns() -> list[str]:
    d = Path("/run/netns")
    return [p.name for p in d.iterdir()] if d.exists() else []


_handlers_installed = False


def install_cleanup_handlers() -> None:
    """Tear everything down at exit and on SIGTERM/SIGINT/SIGHUP."""
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(down)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        down()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, on_signal)


# --------------------------------------------------------------------------- the lab

@dataclass
class Lab:
    """The machines of a lab manifest (default: the checkout's), or some of them."""

    release: str
    state_dir: Path
    names: Sequence[str] | None = None
    manifest_path: Path | None = None
    machines: dict[str, Machine] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spec = manifest.load(path=self.manifest_path or manifest.MANIFEST)
        self.addresses = lab_addresses(self.spec)
        if self.names is None:
            self.names = tuple(self.addresses)

    def up(self) -> None:
        install_cleanup_handlers()
        build_rootfs(self.release)
        for n in self.names or ():
            m = Machine(n, self.release, self.addresses[n], self.state_dir, self.manifest_path)
            self.machines[n] = m
            m.boot()

    def apply_all(self, *args: str) -> dict[str, ApplyResult]:
        """Apply in the manifest's order (``after``): each wave in parallel, after the
        waves before it."""
        results: dict[str, ApplyResult] = {}
        for wave in manifest.waves(self.spec, list(self.machines)):
            threads = []
            for n in wave:
                def work(n: str = n) -> None:
                    results[n] = self.machines[n].apply(*args)
                t = threading.Thread(target=work)
                t.start()
                threads.append(t)
            for t in threads:
                t.join()
        return results

    def down(self) -> None:
        for m in self.machines.values():
            m.stop()
        self.machines.clear()
        down()

    def __getitem__(self, name: str) -> Machine:
        return self.machines[name]


@contextlib.contextmanager
def lab(release: str, state_dir: Path, names: Sequence[str] | None = None,
        manifest_path: Path | None = None) -> Iterator[Lab]:
    the_lab = Lab(release, state_dir, names, manifest_path)
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()


# --------------------------------------------------------------------------- CLI

def _attach(name: str) -> Machine:
    """A Machine object for a machine started by another harness process."""
    pids = _nspawn_pids(name)
    if not pids:
        raise HarnessError(f"{name} is not running (start it with `up`)")
    m = Machine(name, "?", ADDRESSES.get(name, "?"), STATE_DIR)
    m.pid = _container_init(pids[0])
    if m.pid is None:
        raise HarnessError(f"{name}: cannot find its init process")
    return m


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.harness",
                                 description="nspawn machines for the xmpp-tool lab")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or find) the cached rootfs of releases, in parallel")
    b.add_argument("releases", nargs="*", metavar="RELEASE", help=f"default: {' '.join(RELEASES)}")
    u = sub.add_parser("up", help="boot machines (they keep running after `up` returns)")
    u.add_argument("--release", choices=RELEASES, default="trixie")
    u.add_argument("--state-dir", type=Path, default=STATE_DIR)
    u.add_argument("--no-secrets", action="store_true",
                   help="don't run lab/secrets.py (state dir prepared by hand)")
    u.add_argument("names", nargs="*", default=list(ADDRESSES))
    a = sub.add_parser("apply", help="salt-call state.apply in machines (lab order)")
    a.add_argument("names", nargs="*", default=list(ADDRESSES))
    r = sub.add_parser("run", help="run a command in a machine")
    r.add_argument("name")
    r.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("down", help="stop everything and clean up leftovers")
    sub.add_parser("status", help="list running machines")
    ns = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("harness: must run as root", file=sys.stderr)
        return 77
    try:
        if ns.cmd == "build":
            for path in build_all(ns.releases or RELEASES).values():
                print(path)
        elif ns.cmd == "up":
            make_state_dir(ns.state_dir.resolve(), generate=not ns.no_secrets)
            for n in ns.names:
                if n not in ADDRESSES:
                    raise HarnessError(f"unknown machine {n!r}")
                m = Machine(n, ns.release, ADDRESSES[n], ns.state_dir.resolve())
                m.boot()
                _RUNNING.pop(n, None)  # keep it running after we exit
                print(f"{n} {m.addr} pid={m.pid}")
        elif ns.cmd == "apply":
            rc = 0
            for wave in manifest.waves(LAB, ns.names):
                for n in wave:
                    res = _attach(n).apply()
                    print(f"{n}: {res.summary()}")
                    if not res.ok:
                        print(res.describe_failures())
                        rc = 2
            return rc
        elif ns.cmd == "run":
            cmd = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
            out = _attach(ns.name).run(cmd or ["bash", "-l"], check=False)
            sys.stdout.write(out.stdout)
            sys.stderr.write(out.stderr)
            return out.returncode
        elif ns.cmd == "down":
            down()
        elif ns.cmd == "status":
            for n in sorted(ADDRESSES):
                pids = _nspawn_pids(n)
                print(f"{n:10} {ADDRESSES[n]:15} {'running' if pids else '-'}")
    except HarnessError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
