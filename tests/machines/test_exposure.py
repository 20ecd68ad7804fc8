"""Least exposure, per Debian release: each machine answers only whom it serves.

The lab is booted and applied here (not by the shared fixture) so that the first
apply -- the cluster join over the Erlang distribution -- is captured on the lab
bridge with tcpdump. Then: the port matrix from the host and from the machines,
PROXY headers from anyone but lb never reach a node, and haproxy's XMPP-level
health check takes a wedged (SIGSTOPped) node out and puts it back.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab import harness, manifest
from tests.machines.conftest import LabRun, fresh_state, xmpp_tool
from tests.machines.test_lab import (
    CLUSTER,
    LB,
    bodies,
    have_cli,  # noqa: F401  (fixture)
    send,
    token,
    wait_cluster,
)

pytestmark = [pytest.mark.machines, pytest.mark.root]

LAB = harness.LAB
PROSODY = manifest.with_role(LAB, "prosody")[0]
BALANCER = manifest.entry(LAB, "ejabberd") or "lb"
SEED, NODE = CLUSTER[0], CLUSTER[-1]
DIST = 4370  # salt/ejabberd/parameters/defaults.yaml dist_port
# HTTP File Upload (pillar/lab/map.jinja `upload`): prosody's HTTPS port, each node's,
# and lb's one port per node (in manifest order).
PROSODY_UPLOAD, NODE_UPLOAD = 5281, 5443
LB_UPLOAD = [5444 + i for i, _ in enumerate(CLUSTER)]
# A closed port drops silently (policy drop): a connect that has not succeeded by
# then never will.
CONNECT_TIMEOUT = 3.0

# (source, target machine, port, open?) -- source "host" is the host side of the
# lab bridge (in the lab network, not lb).
MATRIX: list[tuple[str, str, int, bool]] = [
    *[("host", PROSODY, p, True) for p in (5222, 5223)],
    *[("host", BALANCER, p, True) for p in (5222, 5223)],
    *[("host", PROSODY, p, False) for p in (3306, 5269, 5280)],
    *[("host", BALANCER, p, False) for p in (DIST, 4369)],
    *[("host", n, p, False) for n in CLUSTER for p in (5222, 5223, DIST, 4369, 5280, 5269)],
    ("host", PROSODY, PROSODY_UPLOAD, True),
    *[("host", BALANCER, p, True) for p in LB_UPLOAD],
    *[("host", n, NODE_UPLOAD, False) for n in CLUSTER],
    *[(BALANCER, n, NODE_UPLOAD, True) for n in CLUSTER],
    *[(PROSODY, n, p, False) for n in CLUSTER for p in (5222, 5223, DIST)],
    (PROSODY, BALANCER, 5222, True),
    *[(BALANCER, n, p, True) for n in CLUSTER for p in (5222, 5223)],
    *[(BALANCER, n, DIST, False) for n in CLUSTER],
    (NODE, SEED, DIST, True),
    (SEED, NODE, DIST, True),
    *[(NODE, SEED, p, False) for p in (5222, 5223)],
]

STATS = """
import socket
s = socket.socket(socket.AF_UNIX)
s.connect("/run/haproxy/admin.sock")
s.sendall(b"show stat\\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
print(data.decode())
"""


@dataclass
class CapturedLab(LabRun):
    pcap: Path  # the distribution port on the bridge during the first apply


@pytest.fixture(scope="module", params=harness.RELEASES)
def lab(request: pytest.FixtureRequest, rootfs_builds: dict[str, Future[Path]],
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[CapturedLab]:
    """Like conftest's lab, with the first apply captured on the bridge (dist port)."""
    release: str = request.param
    state_dir, accounts = fresh_state(release, rootfs_builds, tmp_path_factory)
    pcap = state_dir.parent / f"dist-{release}.pcap"
    with harness.lab(release, state_dir) as the_lab:
        dump = subprocess.Popen(
            ["ip", "netns", "exec", harness.BRIDGE_NS, "tcpdump", "-i", harness.BRIDGE,
             "-U", "-s", "0", "-w", str(pcap), "tcp", "port", str(DIST)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)  # tcpdump listening before the first packet
            first = the_lab.apply_all()
        finally:
            dump.send_signal(signal.SIGINT)
            dump.wait(timeout=30)
        yield CapturedLab(the_lab, state_dir, first, accounts, pcap)


def test_lab_applies(lab: LabRun) -> None:
    bad = {n: r.describe_failures() for n, r in lab.first.items() if not r.ok}
    assert not bad, bad
    full = {f"ejabberd@{n}" for n in CLUSTER}
    for n in CLUSTER:
        assert wait_cluster(lab, n, full) == full, n


def reachable_from_host(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def reachable_from(lab: LabRun, source: str, address: str, ports: list[int]) -> dict[int, bool]:
    """Connect from inside `source` to each port at once (bash /dev/tcp, bounded)."""
    script = " ".join(
        f"(timeout {CONNECT_TIMEOUT:g} bash -c '</dev/tcp/{address}/{p}' 2>/dev/null;"
        f" echo {p} $?) &" for p in ports) + " wait"
    out = lab.lab[source].run(["bash", "-c", script]).stdout
    return {int(p): rc == "0" for p, rc in (line.split() for line in out.splitlines())}


def test_port_matrix(lab: LabRun) -> None:
    """Every port that should answer does, every other one is closed, per source."""
    addresses = lab.lab.addresses
    seen: dict[tuple[str, str, int], bool] = {}
    host_cases = [(t, p) for s, t, p, _ in MATRIX if s == "host"]
    with ThreadPoolExecutor(max_workers=len(host_cases)) as pool:
        results = pool.map(lambda c: reachable_from_host(addresses[c[0]], c[1]), host_cases)
        for (target, port), ok in zip(host_cases, results, strict=True):
            seen[("host", target, port)] = ok
    by_source: dict[tuple[str, str], list[int]] = {}
    for source, target, port, _ in MATRIX:
        if source != "host":
            by_source.setdefault((source, target), []).append(port)
    for (source, target), ports in by_source.items():
        for port, ok in reachable_from(lab, source, addresses[target], ports).items():
            seen[(source, target, port)] = ok
    wrong = [f"{s} -> {t}:{p} {'open' if seen[(s, t, p)] else 'closed'}, want "
             f"{'open' if want else 'closed'}" for s, t, p, want in MATRIX
             if seen[(s, t, p)] != want]
    print(json.dumps({"release": lab.release, "matrix": [
        [s, t, p, "open" if seen[(s, t, p)] else "closed"] for s, t, p, _ in MATRIX]}))
    assert not wrong, "\n".join(wrong)
    assert len(seen) == len(MATRIX)


def test_proxy_header_straight_to_a_node_is_refused(lab: LabRun) -> None:
    """A client that is not lb cannot hand a node a PROXY header (it claims any
    source address): the connection never opens, from the host or from prosody."""
    header = b"PROXY TCP4 203.0.113.7 10.0.0.1 40000 5222\r\n"
    for node in CLUSTER:
        address = lab.lab.addresses[node]
        with pytest.raises(OSError):
            with socket.create_connection((address, 5222), timeout=CONNECT_TIMEOUT) as s:
                s.sendall(header)
        out = lab.lab[PROSODY].run(
            ["python3", "-c",
             "import socket,sys\n"
             f"try:\n s=socket.create_connection(('{address}',5222),timeout={CONNECT_TIMEOUT})\n"
             f" s.sendall({header!r}); print('sent')\n"
             "except OSError as e: print('refused', type(e).__name__)"]).stdout
        assert out.startswith("refused"), (node, out)


def test_distribution_join_shows_no_cleartext(lab: CapturedLab) -> None:
    """The capture of the distribution port during the first apply (the cluster join)
    holds TLS records, and neither the cookie nor a node name in clear text."""
    pcap = lab.pcap
    packets = subprocess.run(["tcpdump", "-r", str(pcap), "-nn", "-q"], text=True,
                             capture_output=True, check=True).stdout.splitlines()
    assert len(packets) > 20, packets  # a join really went over this port
    raw = pcap.read_bytes()
    secrets = (lab.state_dir / "secrets.sls").read_text()
    cookie = json.loads("\n".join(ln for ln in secrets.splitlines()
                                  if not ln.startswith("#")))["ejabberd"]["cookie"]
    assert cookie and cookie.encode() not in raw
    for node in CLUSTER:  # the plain handshake sends the node names in clear
        assert f"ejabberd@{node}".encode() not in raw, node
    assert b"\x16\x03\x01" in raw or b"\x16\x03\x03" in raw  # TLS handshake records


def server_states(lab: LabRun) -> dict[tuple[str, str], str]:
    out = lab.lab[BALANCER].run(["python3", "-c", STATS]).stdout
    rows = [line.split(",") for line in out.splitlines() if line and line[0] != "#"]
    return {(r[0], r[1]): r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}


def wait_states(lab: LabRun, node: str, prefix: str, timeout: float) -> float:
    """Seconds until `node` is in state `prefix` (UP/DOWN) in every backend."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        states = {b: s for (b, n), s in server_states(lab).items() if n == node}
        if states and all(s.startswith(prefix) for s in states.values()):
            return time.monotonic() - start
        time.sleep(0.2)
    pytest.fail(f"{node} not {prefix} within {timeout} s: {server_states(lab)}")


@pytest.mark.usefixtures("have_cli")
def test_wedged_node_is_taken_out_and_put_back(lab: LabRun) -> None:
    """SIGSTOP the node's beam: its port still accepts, but the XMPP check gets no
    <stream:features>; haproxy marks it down, clients through lb keep working on
    the others; SIGCONT brings it back (it restarts to rejoin)."""
    assert all(s == "UP" for s in server_states(lab).values()), server_states(lab)
    beam = lab.lab[NODE].run(["pgrep", "-o", "-u", "ejabberd", "beam.smp"]).stdout.strip()
    assert beam
    # haproxy: fall x (inter + check timeout), + one interval (salt/haproxy defaults:
    # 2 x (1 s + 1 s) + 1 s). The bound below is generous for a loaded host; the
    # measured time is printed.
    lab.lab[NODE].run(["kill", "-STOP", beam])
    try:
        down = wait_states(lab, NODE, "DOWN", timeout=30)
        # The others serve: logins and reads through lb (the wedged node is
        # out of the rotation, so no session lands there).
        for _ in range(3):
            res = xmpp_tool(lab, "bob@ejabberd", LB, "-J", "unread", timeout=60)
            assert res.returncode == 0, res.stderr
    finally:
        lab.lab[NODE].run(["kill", "-CONT", beam])
    # The others disconnected it while it was wedged (salt/ejabberd mod_quorum): it
    # wakes up a minority, fences itself and restarts to rejoin. Wait for that.
    full = {f"ejabberd@{n}" for n in CLUSTER}
    for n in CLUSTER:
        assert wait_cluster(lab, n, full, timeout=120) == full, n
    up = wait_states(lab, NODE, "UP", timeout=60)
    print(json.dumps({"release": lab.release, "wedged_down_s": round(down, 2),
                      "back_up_s": round(up, 2)}))
    sent = [token(f"after wedge {i}") for i in range(4)]
    for body in sent:
        send(lab, "alice@ejabberd", LB, "bob@ejabberd", body)
    for _ in range(2):
        got = bodies(lab, "bob@ejabberd", LB)
        assert [b for b in got if b in sent] == sent
