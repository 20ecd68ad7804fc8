#!/usr/bin/env python3
"""tsung against the lab: an independent load anchor for ``bench/lab_load.py``.

Drives the ejabberd cluster of the nspawn lab (``lab/harness.py``, machines already up
and applied: ``--attach``) THROUGH ``lb`` with tsung (Debian package ``tsung``), at
the scenario ``bench/lab_load.py --mode load`` runs:

* N senders (``load0..``), M ``type=chat`` messages with unique ids to R recipients
  (``loadrcpt0..``), the same distribution as ``bench/loadgen.py``: message n goes
  from sender n mod N to recipient n mod R, each sender sending its share in id order
  (with R dividing N, sender i always writes to recipient i mod R);
* every client: STARTTLS on lb:5222, SASL PLAIN, bind, XEP-0198 ``<enable/>``; then
  one message in flight: the message and an ``<r/>`` in one write, wait for ``<a``;
* no presence (recipients' offline queues stay untouched, as loadgen).

tsung 1.7 knows neither SCRAM nor XEP-0198 (raw ``<enable/>``/``<r/>``) and does not
verify the server's certificate: its STARTTLS passes ``cacertfile`` (the lab CA, given)
to Erlang's ``ssl:connect`` without ``verify_peer``, so a server with any certificate
would be accepted.  The target is refused unless it is inside the harness's /24.

The accounts are registered for the run through the seed node's ReST API
(``bench/lab_load.py``'s helpers) with a fresh random password that is never printed
nor on a command line; tsung reads it from a CSV file in a private (0700) temporary
directory, deleted afterwards with the scenario.  The run is bounded: tsung's
``<load duration>``, ``global_ack_timeout`` per ack, and ``timeout`` around the
process (``--deadline``).  The raw traffic log is reduced by ``bench/tsung_report.py``;
then (``--audit``, default) the recipients' archives are read with loadgen's MAM
reader: found / lost (acked, not archived).

Exit codes: 0 reduced (and lost == 0); 1 acknowledged messages lost; 64 usage or a
target outside the lab; 65 the tsung run is empty or aborted (nothing sent or acked)
or its traffic log incomplete (figures printed, of the logged part only);
69 lab or tsung unavailable (or tsung overran --deadline); 77 not root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import cpu, lab_load, loadgen, tsung_report
from lab.harness import machine_cgroups

EX_OK, EX_LOST, EX_USAGE, EX_DATAERR, EX_UNAVAILABLE, EX_NOPERM = 0, 1, 64, 65, 69, 77
DTD = "/usr/share/tsung/tsung-1.0.dtd"
SM = "urn:xmpp:sm:3"
SESSION = "xt-load"


@dataclass
class Scenario:
    host: str
    port: int
    domain: str
    cafile: Path
    users_csv: Path  # sender;index;count;password lines (0600)
    run_id: str
    senders: int = 100
    recipients: int = 20
    messages: int = 10_000
    duration: int = 300  # tsung's <load duration>: the whole run, seconds
    ack_timeout_ms: int = 30_000  # one ack (and each login step)
    linger: int = 15  # seconds each client stays after its last ack (see build_scenario)


def shares(senders: int, messages: int) -> list[int]:
    """How many messages each sender sends: message n belongs to sender n mod N."""
    return [len(range(i, messages, senders)) for i in range(senders)]


def message_fun(sc: Scenario) -> str:
    """Erlang fun for a <setdynvars sourcetype="eval">: the k-th message of sender idx.

    Message n = idx + (k - 1) * N, id ``RUN-nnnnnn``, to ``loadrcpt(n mod R)``, body
    ``xt-load RUN-nnnnnn``: loadgen's ids and bodies, so its MAM reader can audit.
    The id comes first so that the traffic log's 44-character lines keep it.
    """
    return (
        "fun({_Session, DynVars}) ->"
        " ToInt = fun(V) when is_integer(V) -> V;"
        " (V) when is_binary(V) -> binary_to_integer(V);"
        " (V) -> list_to_integer(V) end,"
        " {ok, Idx} = ts_dynvars:lookup(idx, DynVars),"
        " {ok, K} = ts_dynvars:lookup(k, DynVars),"
        f" N = ToInt(Idx) + (ToInt(K) - 1) * {sc.senders},"
        f' Id = lists:flatten(io_lib:format("{sc.run_id}-~6..0B", [N])),'
        " lists:flatten(io_lib:format("
        f"\"<message id='~s' to='loadrcpt~B@{sc.domain}' type='chat'>"
        f"<body>{loadgen.BODY_PREFIX} ~s</body></message><r xmlns='{SM}'/>\","
        f" [Id, N rem {sc.recipients}, Id]))"
        " end."
    )


def _jabber(parent: ET.Element, **attrs: str) -> ET.Element:
    req = ET.SubElement(parent, "request")
    if attrs.pop("subst", "") == "true":
        req.set("subst", "true")
    return ET.SubElement(req, "jabber", attrs)


def build_scenario(sc: Scenario) -> str:
    """The tsung XML (ElementTree does the escaping of the Erlang code and raw XML)."""
    root = ET.Element("tsung", loglevel="warning", dumptraffic="light", version="1.0")
    clients = ET.SubElement(root, "clients")
    ET.SubElement(
        clients,
        "client",
        host="localhost",
        use_controller_vm="true",
        maxusers=str(sc.senders),
    )
    servers = ET.SubElement(root, "servers")
    ET.SubElement(servers, "server", host=sc.host, port=str(sc.port), type="tcp")
    load = ET.SubElement(root, "load", duration=str(sc.duration), unit="second")
    # Static users, all started at once as loadgen's senders (an arrival phase at a
    # high rate started only 2 of 10 users within its 1 s).
    for _ in range(sc.senders):
        ET.SubElement(load, "user", session=SESSION, start_time="0", unit="second")
    options = ET.SubElement(root, "options")
    ET.SubElement(options, "option", name="global_ack_timeout", value=str(sc.ack_timeout_ms))
    ET.SubElement(options, "option", type="ts_jabber", name="domain", value=sc.domain)
    ET.SubElement(options, "option", type="ts_jabber", name="userid_max", value="0")
    ET.SubElement(options, "option", name="file_server", id="users", value=str(sc.users_csv))
    sessions = ET.SubElement(root, "sessions")
    s = ET.SubElement(
        sessions, "session", bidi="true", probability="100", name=SESSION, type="ts_jabber"
    )
    dv = ET.SubElement(
        s, "setdynvars", sourcetype="file", fileid="users", delimiter=";", order="iter"
    )
    for name in ("user", "idx", "count", "pw"):
        ET.SubElement(dv, "var", name=name)
    # STARTTLS, SASL PLAIN, bind: each step waits for what the server must answer
    # (ack="local" would take any data and ignores regexp; "parse" matches it).
    first = _jabber(s, type="connect", ack="parse", regexp="starttls", subst="true")
    # A dynvar reference, filled from the private CSV file: not a password.
    auth = {"username": "%%_user%%", "passwd": "%%_pw%%"}
    ET.SubElement(first, "xmpp_authenticate", auth)
    _jabber(s, type="starttls", ack="bidi_ack", cacertfile=str(sc.cafile))
    _jabber(s, type="connect", ack="parse", regexp="mechanisms")
    _jabber(s, type="auth_sasl", ack="parse", regexp="success")
    _jabber(s, type="connect", ack="parse", regexp="urn:ietf:params:xml:ns:xmpp-bind")
    _jabber(s, type="auth_sasl_bind", ack="parse", regexp="<jid>", resource=f"tsung-{sc.run_id}")
    _jabber(s, type="raw", ack="parse", regexp="<enabled", data=f"<enable xmlns='{SM}'/>")
    loop = ET.SubElement(s, "for", var="k", to="%%_count%%", incr="1")
    loop.set("from", "1")
    msg = ET.SubElement(loop, "setdynvars", sourcetype="eval", code=message_fun(sc))
    ET.SubElement(msg, "var", name="stanza")
    tr = ET.SubElement(loop, "transaction", name=tsung_report.TRANSACTION)
    _jabber(tr, type="raw", ack="parse", regexp="<a ", data="%%_stanza%%", subst="true")
    # tsung's controller writes the traffic log from a queue that lags at several
    # hundred messages a second, and drops what is still queued when the last client
    # ends (seen: 17 of 100 clients' ends and 9 % of the sends missing at 770 msgs/s).
    # Clients that linger give it time to drain; the lingering is outside the
    # measured window (first message sent -> last ack).
    ET.SubElement(s, "thinktime", value=str(sc.linger), random="false")
    _jabber(s, type="close", ack="no_ack")
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0"?>\n<!DOCTYPE tsung SYSTEM "{DTD}">\n{body}\n'


def write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def users_csv(senders: int, messages: int, password: str) -> str:
    return "".join(f"load{i};{i};{n};{password}\n" for i, n in enumerate(shares(senders, messages)))


def scrub_logdir(logdir: Path, password: str) -> None:
    """tsung copies its scenario into the log dir; nothing there may hold the password."""
    for f in logdir.rglob("*"):
        if f.is_file() and f.stat().st_size < 50_000_000:
            data = f.read_bytes()
            if password.encode() in data:
                f.write_bytes(data.replace(password.encode(), b"<password>"))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tsung(
    scenario: Path, logdir: Path, deadline: float, tsung: str = "tsung"
) -> subprocess.CompletedProcess[str]:
    """``tsung -f FILE -l DIR -n start`` (no web GUI), bounded by ``timeout``."""
    cmd = [
        "timeout",
        "--kill-after=10",
        str(int(deadline)),
        tsung,
        "-n",
        "-f",
        str(scenario),
        "-l",
        str(logdir),
        "start",
    ]
    return subprocess.run(
        cmd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
    )


def audit(
    target: lab_load.Target, password: str, run_id: str, acked: list[str], started: datetime,
    recipients: int,
) -> dict[str, Any]:
    """Read the recipients' archives with loadgen's MAM reader: found / lost."""
    cfg = loadgen.LoadConfig(
        host=target.host,
        port=target.port,
        cafile=target.cafile,
        senders=[],
        recipients=loadgen.accounts("loadrcpt", recipients, target.domain, password),
        messages=len(acked),
        allow_nets=[target.allow_net],
    )
    since = started - timedelta(minutes=2)
    resource = f"audit-{run_id}"

    async def read_all() -> list[list[tuple[str, str]]]:
        return await asyncio.wait_for(
            asyncio.gather(
                *(
                    loadgen.Reader(cfg, a, resource).archive_ids(run_id, since)
                    for a in cfg.recipients
                )
            ),
            timeout=cfg.verify_timeout,
        )

    lists = asyncio.run(read_all())
    entries = {pair for pairs in lists for pair in pairs}
    counts: dict[str, int] = {}
    for mid, _aid in entries:
        counts[mid] = counts.get(mid, 0) + 1
    acked_set = set(acked)
    lost = sorted(acked_set - counts.keys())
    return {
        "found": len(acked_set & counts.keys()),
        "lost": len(lost),
        "lost_ids": lost[:100],
        "found_unacked": len(counts.keys() - acked_set),
        "duplicates": sum(c - 1 for c in counts.values()),
    }


@dataclass
class Spec:
    senders: int = 100
    recipients: int = 20
    messages: int = 10_000
    deadline: float = 300.0
    ack_timeout: float = 30.0
    audit: bool = True
    keep_users: bool = False
    keep_logs: Path | None = None
    tsung: str = "tsung"


def run_lab_tsung(
    machines: dict[str, Any], state_dir: Path, spec: Spec
) -> dict[str, Any]:
    target = lab_load.lab_target(state_dir)
    loadgen.check_target(target.host, [target.allow_net])
    if not target.cafile.exists():
        raise loadgen.LoadError(f"{target.cafile}: no lab CA (wrong --state-dir?)", EX_USAGE)
    seed = machines[lab_load.EJABBERD_NODES[0]]
    password = secrets.token_urlsafe(18)
    run_id = secrets.token_hex(4)
    users = {f"load{i}": password for i in range(spec.senders)}
    users.update({f"loadrcpt{i}": password for i in range(spec.recipients)})
    report: dict[str, Any] = {
        "tool": "tsung",
        "run_id": run_id,
        "target": f"{target.host}:{target.port}",
        "senders": spec.senders,
        "recipients": spec.recipients,
        "messages": spec.messages,
        "inflight": 1,
    }
    t = time.monotonic()
    lab_load.register_users(seed, target.domain, users)
    report["register_seconds"] = round(time.monotonic() - t, 1)
    tmp = Path(tempfile.mkdtemp(prefix="xt-tsung-"))  # 0700
    try:
        csv = tmp / "users.csv"
        write_private(csv, users_csv(spec.senders, spec.messages, password))
        sc = Scenario(
            host=target.host,
            port=target.port,
            domain=target.domain,
            cafile=target.cafile,
            users_csv=csv,
            run_id=run_id,
            senders=spec.senders,
            recipients=spec.recipients,
            messages=spec.messages,
            duration=max(1, int(spec.deadline) - 15),
            ack_timeout_ms=int(spec.ack_timeout * 1000),
        )
        scenario = tmp / "xt-load.xml"
        write_private(scenario, build_scenario(sc))
        logdir = tmp / "log"
        logdir.mkdir()
        started = datetime.now(UTC)
        cgroups = {name: machine_cgroups(name) for name in machines}
        before = cpu.take(cgroups)
        children = _children_cpu()
        t = time.monotonic()
        proc = run_tsung(scenario, logdir, spec.deadline, spec.tsung)
        report["tsung_seconds"] = round(time.monotonic() - t, 1)
        after = cpu.take(cgroups)
        # The generator is tsung's Erlang VM, a child of this process (cpu.take counts
        # only this process's own CPU).
        after.generator += _children_cpu() - children
        report["tsung_rc"] = proc.returncode
        scrub_logdir(logdir, password)
        if spec.keep_logs is not None:
            shutil.copytree(logdir, spec.keep_logs, dirs_exist_ok=True)
        if proc.returncode in (124, 137):
            report["error"] = f"tsung overran --deadline {spec.deadline:.0f} s and was stopped"
        try:
            rep = tsung_report.reduce_dir(logdir)
        except tsung_report.ReportError as exc:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
            raise tsung_report.ReportError(f"{exc}; tsung said: {' | '.join(tail)}") from exc
        report["result"] = rep.as_dict()
        # Per message: every message tsung sent, even those its traffic log missed.
        report["cpu"] = cpu.breakdown(before, after, max(rep.acked, rep.transactions))
        report["latencies_ms"] = rep.latencies_ms
        if spec.audit:
            t = time.monotonic()
            report["audit"] = audit(
                target, password, run_id, rep.acked_ids, started, spec.recipients
            )
            report["audit"]["seconds"] = round(time.monotonic() - t, 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if not spec.keep_users:
            lab_load.unregister_users(seed, target.domain, list(users))
    return report


def describe(report: dict[str, Any]) -> str:
    rep = tsung_report.TsungReport(**report["result"])
    lines = [
        f"== tsung run {report['run_id']} via lb {report['target']}: {report['senders']} "
        f"senders -> {report['recipients']} recipients, {report['messages']} messages, "
        f"1 in flight (tsung {report['tsung_seconds']} s, rc {report['tsung_rc']})",
        tsung_report.format_report(rep),
    ]
    if "audit" in report:
        a = report["audit"]
        lines.append(
            f"  MAM audit: found {a['found']}   LOST {a['lost']}   duplicates {a['duplicates']}"
            f"   found unacked {a['found_unacked']}"
        )
    if "cpu" in report:
        lines.append(cpu.describe(report["cpu"]))
    if "error" in report:
        lines.append(f"  error: {report['error']}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.tsung_lab",
        description=(
            "tsung through lb against the nspawn lab's ejabberd cluster, at bench/lab_load.py's "
            "scenario (1 message in flight per sender); reduced to msgs/s and ack latency "
            "percentiles, then a MAM audit. Needs root and the Debian package tsung."
        ),
        epilog=(
            "exit codes: 0 ok, 1 acknowledged messages lost, 64 usage / target outside the "
            "lab, 65 empty, aborted or incompletely logged tsung run, 69 lab or tsung "
            "unavailable, 77 not root"
        ),
    )
    p.add_argument(
        "--attach",
        action="store_true",
        help="use machines started by `python -m lab.harness up` (default; the only mode)",
    )
    p.add_argument(
        "--state-dir", type=Path, help="the lab's state dir (default: the harness's)"
    )
    p.add_argument("--senders", type=int, default=100, help="concurrent senders (default 100)")
    p.add_argument("--recipients", type=int, default=20, help="recipients (default 20)")
    p.add_argument("--messages", type=int, default=10_000, help="messages (default 10000)")
    p.add_argument(
        "--deadline", type=float, default=300.0, help="hard limit on the tsung process, s (300)"
    )
    p.add_argument("--ack-timeout", type=float, default=30.0, help="one ack at most, s (30)")
    p.add_argument("--no-audit", action="store_true", help="skip the MAM audit")
    p.add_argument("--keep-users", action="store_true", help="keep the load accounts")
    p.add_argument(
        "--keep-logs", type=Path, metavar="DIR", help="copy tsung's log dir here (scrubbed)"
    )
    p.add_argument("--tsung", default="tsung", help="the tsung command (default: tsung)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return EX_OK if exc.code == 0 else EX_USAGE
    if min(args.senders, args.recipients, args.messages) < 1 or args.deadline < 30:
        print(
            "tsung_lab: --senders, --recipients, --messages >= 1 and --deadline >= 30",
            file=sys.stderr,
        )
        return EX_USAGE
    if os.geteuid() != 0:
        print("tsung_lab: must run as root (nspawn machines)", file=sys.stderr)
        return EX_NOPERM
    if shutil.which(args.tsung) is None:
        print(f"tsung_lab: {args.tsung}: not found (apt-get install tsung)", file=sys.stderr)
        return EX_UNAVAILABLE
    from lab import harness

    spec = Spec(
        senders=args.senders,
        recipients=args.recipients,
        messages=args.messages,
        deadline=args.deadline,
        ack_timeout=args.ack_timeout,
        audit=not args.no_audit,
        keep_users=args.keep_users,
        keep_logs=args.keep_logs,
        tsung=args.tsung,
    )
    report: dict[str, Any] | None = None
    try:
        state_dir, _, machines = lab_load.attach(args.state_dir)
        report = run_lab_tsung(machines, state_dir, spec)
        print(describe(report), flush=True)
    except loadgen.LoadError as exc:
        print(f"tsung_lab: {exc}", file=sys.stderr)
        return int(exc.code)
    except tsung_report.ReportError as exc:
        print(f"tsung_lab: {exc}", file=sys.stderr)
        return exc.code
    except harness.HarnessError as exc:
        print(f"tsung_lab: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    finally:
        if args.json and report:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
    if "error" in report:
        return EX_UNAVAILABLE
    if report["result"].get("incomplete"):
        print(f"tsung_lab: {report['result']['incomplete']}", file=sys.stderr)
        return EX_DATAERR
    if report.get("audit", {}).get("lost"):
        print(f"tsung_lab: {report['audit']['lost']} acknowledged messages lost", file=sys.stderr)
        return EX_LOST
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
