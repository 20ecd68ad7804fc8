#!/usr/bin/env python3
"""Reduce one tsung run of ``bench/tsung_lab.py``'s scenario to loadgen's figures.

tsung's own report (``tsung.log``, ``tsung_stats.pl``) aggregates samples in 10 s
windows (count, mean, stddev, min, max): no percentiles, and a short run is a few
windows.  So the run is reduced from the raw traffic log instead: the scenario sets
``dumptraffic="light"``, which makes tsung write one line per send and per receive
(``Send:EPOCH:PID:first 44 characters``) to ``tsung.dump``.  The 44-character cut
keeps the base64 of a SASL PLAIN ``<auth>`` out of the file (it begins after
character 60) while keeping a message's id (the scenario puts it first).

For every client (an Erlang pid) the messages it sent are numbered in order; an
XEP-0198 ``<a h='N'/>`` it receives acknowledges the first N of them (the scenario
sends no other stanza after ``<enable/>``; ``<r/>``/``<a/>`` are not counted by
XEP-0198).  Ack latency = receive time of the first ``<a/>`` covering a message -
its send time; msgs/s = acked / (last ack - first message sent), as loadgen computes
them.  Errors are tsung's ``error_*`` counters from ``tsung.log`` (cumulative
totals), plus the transactions it counted (``tr_msg``) as a cross-check.

``python -m bench.tsung_report LOGDIR [--json FILE]`` reduces a kept log directory.
Exit codes: 0 reduced; 65 the run is empty or aborted (no dump, or no message sent,
or nothing acknowledged: one line on stderr), or its traffic log is incomplete (tsung
counted more transactions or clients than it logged; the figures are printed, of the
logged part only); 64 usage.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.loadgen import percentile

EX_OK, EX_USAGE, EX_DATAERR = 0, 64, 65
TRANSACTION = "msg"  # the scenario's <transaction name=...> around one message + ack

# Send/Recv name the client's pid (<0.180.0>), NewClient/EndClient its number.
_LINE = re.compile(r"^(Send|Recv|NewClient|EndClient):([0-9.eE+-]+):([^:]+):?(.*)$")
_MESSAGE_ID = re.compile(r"""^<message id=['"]([^'"]+)['"]""")
_ACK = re.compile(r"""<a\s[^>]*?\bh=['"](\d+)['"]""")
_ENABLED = re.compile(r"<enabled")


class ReportError(Exception):
    """The run cannot be reduced; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EX_DATAERR) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class TsungReport:
    clients_started: int = 0
    clients_ended: int = 0
    clients_enabled: int = 0  # clients that got <enabled/> (XEP-0198 on)
    sent: int = 0  # messages sent (distinct ids)
    acked: int = 0
    unacked: int = 0
    transactions: int = 0  # tsung's own tr_msg count (tsung.log)
    errors: dict[str, int] = field(default_factory=dict)  # tsung.log error_* totals
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    msgs_per_s: float | None = None
    send_seconds: float | None = None  # first message sent -> last ack
    login_seconds: float | None = None  # first client started -> first message sent
    incomplete: str | None = None  # the traffic log misses part of the run (why)
    acked_ids: list[str] = field(default_factory=list, repr=False)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self, with_ids: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_ids:
            d.pop("acked_ids")
            d.pop("latencies_ms")
        return d


@dataclass
class _Client:
    sent: list[tuple[str, float]] = field(default_factory=list)  # (id, time), in order
    acked: int = 0  # how many of ``sent`` are acknowledged


def parse_log(lines: Iterable[str]) -> tuple[int, dict[str, int]]:
    """(``tr_msg`` transactions, ``error_*`` totals) from tsung.log's text stats.

    A sample line is ``stats: NAME COUNT MEAN STDDEV MAX MIN MEANFB COUNTFB`` per
    window; a counter line is ``stats: NAME IN_WINDOW TOTAL``.
    """
    transactions = 0
    errors: dict[str, int] = {}
    for line in lines:
        parts = line.split()
        if len(parts) < 4 or parts[0] != "stats:":
            continue
        name = parts[1]
        if name == f"tr_{TRANSACTION}" and parts[2].isdigit():
            transactions += int(parts[2])
        elif name.startswith("error_") and parts[-1].isdigit():
            errors[name] = int(parts[-1])  # cumulative: the last window holds the total
    return transactions, errors


def reduce_run(dump: Iterable[str], log: Iterable[str] = ()) -> TsungReport:
    """Reduce a run's ``tsung.dump`` (light) and ``tsung.log`` lines to a report.

    Raises ReportError (exit 65) when no message was sent or none was acknowledged.
    """
    rep = TsungReport()
    clients: dict[str, _Client] = {}
    first_start: float | None = None
    latencies: list[float] = []
    acked_ids: list[str] = []
    last_ack: float | None = None
    for raw in dump:
        m = _LINE.match(raw.rstrip("\n"))
        if m is None:
            continue  # "load:N" lines, or a received chunk's continuation after a newline
        kind, stamp, pid, data = m.groups()
        try:
            t = float(stamp)
        except ValueError:
            continue
        data = data.strip()
        if kind == "NewClient":
            rep.clients_started += 1
            first_start = t if first_start is None else min(first_start, t)
            continue
        if kind == "EndClient":
            rep.clients_ended += 1
            continue
        client = clients.setdefault(pid, _Client())
        if kind == "Send":
            mid = _MESSAGE_ID.match(data)
            if mid:
                client.sent.append((mid.group(1), t))
            continue
        if _ENABLED.search(data):
            rep.clients_enabled += 1
        for a in _ACK.finditer(data):
            h = int(a.group(1))
            # h counts every stanza handled since <enable/>: only messages here.
            while client.acked < min(h, len(client.sent)):
                mid_text, sent_at = client.sent[client.acked]
                latencies.append((t - sent_at) * 1000.0)
                acked_ids.append(mid_text)
                client.acked += 1
                last_ack = t if last_ack is None else max(last_ack, t)
    rep.transactions, rep.errors = parse_log(log)
    sends = [s for c in clients.values() for s in c.sent]
    rep.sent = len({mid for mid, _ in sends})
    if not sends:
        raise ReportError(
            f"tsung sent no message ({rep.clients_started} clients started, "
            f"errors {rep.errors or 'none'}): aborted or empty run"
        )
    rep.acked = len(acked_ids)
    rep.unacked = len(sends) - rep.acked
    if rep.transactions > rep.acked or rep.clients_ended < rep.clients_started:
        # tsung counted more acked transactions (or client starts) than its traffic
        # log shows: the controller stopped before writing all of it.
        rep.incomplete = (
            f"tsung.dump incomplete: {rep.acked} acks of {rep.transactions} transactions, "
            f"{rep.clients_ended} of {rep.clients_started} client ends"
        )
    if not rep.acked:
        raise ReportError(
            f"tsung sent {rep.sent} messages and none was acknowledged "
            f"(errors {rep.errors or 'none'})"
        )
    first_send = min(t for _, t in sends)
    if first_start is not None:
        rep.login_seconds = round(first_send - first_start, 3)
    rep.acked_ids = acked_ids
    rep.latencies_ms = [round(v, 3) for v in latencies]
    for name, q in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("max_ms", 100)):
        v = percentile(latencies, q)
        setattr(rep, name, None if v is None else round(v, 2))
    assert last_ack is not None
    span = last_ack - first_send
    rep.send_seconds = round(span, 3)
    rep.msgs_per_s = round(rep.acked / span, 1) if span > 0 else None
    return rep


def reduce_dir(logdir: Path) -> TsungReport:
    """Reduce a tsung log directory (``-l DIR`` holds one timestamped subdirectory)."""
    dumps = sorted(logdir.glob("**/tsung.dump"))
    if not dumps:
        raise ReportError(f"{logdir}: no tsung.dump (tsung did not start, or was killed)")
    dump = dumps[-1]
    log_file = dump.with_name("tsung.log")
    with dump.open(errors="replace") as d:
        if log_file.exists():
            with log_file.open(errors="replace") as lg:
                return reduce_run(d, lg)
        return reduce_run(d)


def format_report(rep: TsungReport) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} ms"

    errors = ", ".join(f"{k} {v}" for k, v in sorted(rep.errors.items())) or "none"
    return "\n".join(
        [
            f"  clients {rep.clients_started} started, {rep.clients_enabled} with XEP-0198, "
            f"{rep.clients_ended} ended",
            f"  sent {rep.sent}   acked {rep.acked}   unacked {rep.unacked}   "
            f"tsung transactions {rep.transactions}",
            f"  ack latency p50 {ms(rep.p50_ms)}  p90 {ms(rep.p90_ms)}  p99 {ms(rep.p99_ms)}  "
            f"max {ms(rep.max_ms)}",
            f"  {rep.msgs_per_s if rep.msgs_per_s is not None else '-'} msgs/s over "
            f"{rep.send_seconds} s (logins {rep.login_seconds} s)",
            f"  errors: {errors}",
            *([f"  INCOMPLETE: {rep.incomplete}"] if rep.incomplete else []),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.tsung_report",
        description="Reduce a tsung log directory of bench/tsung_lab.py's scenario.",
        epilog="exit codes: 0 reduced, 64 usage, 65 empty, aborted or incompletely logged run",
    )
    p.add_argument("logdir", type=Path)
    p.add_argument("--json", type=Path, metavar="FILE", help="write the report as JSON")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return EX_OK if exc.code == 0 else EX_USAGE
    try:
        rep = reduce_dir(args.logdir)
    except ReportError as exc:
        print(f"tsung_report: {exc}", file=sys.stderr)
        return exc.code
    print(format_report(rep))
    if args.json:
        args.json.write_text(json.dumps(rep.as_dict(), indent=1) + "\n")
    if rep.incomplete:
        print(f"tsung_report: {rep.incomplete}", file=sys.stderr)
        return EX_DATAERR
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
