#!/usr/bin/env python3
"""XMPP load generator: N concurrent senders, XEP-0198 acks, then a MAM audit.

One process, one asyncio loop, slixmpp clients.  Each sender logs in WITHOUT
presence (so nobody's offline queue is flushed or deleted), enables stream
management (XEP-0198) and sends ``type=chat`` messages with unique ids to a few
recipients, keeping up to ``--inflight`` messages unacknowledged.  For every message
it records when it was sent and when the server's SM ack covering it arrived (or
that the connection died first).  Afterwards the recipients log in (no presence
either) and read their archives with MAM (XEP-0313); then:

* acked    messages the server acknowledged (XEP-0198 ``<a h=…/>`` covering them)
* found    acked messages present in the recipient's archive
* lost     acked but not found, and no error stanza told the sender: **must be 0**
* bounced  acked, then answered with an error stanza (the sender was told: a visible
  failure, like ``xmpp-tool send`` exiting 76); counted apart when not archived
* failed visibly: sends whose connection died before the ack (the client knows;
  with ``--resend`` they are sent again after the reconnect, with the same id)
* duplicates: archive entries beyond the first for one message id
* p50/p99 ack latency, messages per second (acked / time from first send to last ack)

When a connection drops (e.g. a cluster node is killed behind the balancer) the
sender reconnects to the SAME address; ``recovery`` is the time from a client's
disconnect to its first ack after reconnecting.

Safety: the target must be loopback or inside a network given with ``--allow-net``
(private, /16 or narrower) — nothing else is ever contacted; every run is bounded
by ``--messages`` AND a hard ``--deadline`` (the process exits by itself).

Passwords: all load accounts share one throwaway password, read from
``$XMPP_TOOL_PASSWORD`` or ``--password-file`` (never from the command line).
Accounts must exist (``--local-ejabberd`` creates a throwaway server with them).

Exit codes: 0 run done and lost == 0; 1 lost > 0; 64 usage; 69 no sender could log
in / server unreachable; 77 TLS or authentication failure; 78 bad password file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import os
import secrets
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0198 import stanza as sm_stanza

log = logging.getLogger("loadgen")

EX_OK, EX_LOST, EX_USAGE, EX_UNAVAILABLE, EX_NOPERM, EX_CONFIG = 0, 1, 64, 69, 77, 78
MAM_PAGE = 250  # ejabberd caps RSM pages at 250 (mod_mam's max page size)
BODY_PREFIX = "xt-load"


class LoadError(Exception):
    """A run could not be done; ``code`` is the exit code the CLI uses."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# ----------------------------------------------------------------------- target safety


def check_target(host: str, allow_nets: list[str]) -> list[str]:
    """Resolve ``host``; every address must be loopback or inside an allowed network.

    Returns the resolved addresses; raises LoadError (exit 64) otherwise.  Allowed
    networks must be private and no wider than /16, so a typo cannot aim the load at
    the internet.
    """
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for text in allow_nets:
        try:
            net = ipaddress.ip_network(text, strict=False)
        except ValueError as exc:
            raise LoadError(f"--allow-net {text!r}: {exc}", EX_USAGE) from exc
        if not net.is_private or net.prefixlen < (16 if net.version == 4 else 48):
            raise LoadError(
                f"--allow-net {text}: only private networks of /16 (IPv6 /48) or narrower",
                EX_USAGE,
            )
        nets.append(net)
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise LoadError(f"cannot resolve {host!r}: {exc}", EX_USAGE) from exc
    addrs = sorted({str(info[4][0]) for info in infos})
    for addr in addrs:
        ip = ipaddress.ip_address(addr)
        if ip.is_loopback or any(ip in net for net in nets):
            continue
        raise LoadError(
            f"refusing target {host} ({addr}): not loopback and not inside --allow-net",
            EX_USAGE,
        )
    return addrs


# ---------------------------------------------------------------------------- records


@dataclass
class Message:
    """One message of the run, across its send attempts."""

    mid: str
    sender: int
    recipient: str
    attempts: int = 0
    sent_at: float | None = None  # monotonic time of the latest attempt
    acked_at: float | None = None
    latency: float | None = None  # ack time - send time of the acknowledged attempt
    failed_attempts: int = 0  # attempts whose connection died before the ack
    bounced: str | None = None  # text of a <message type='error'> about it, if any
    sent_stream: int = 0  # the sender's stream (1 = first login) of the latest attempt
    acked_stream: int = 0  # the stream whose ack covered it
    due: float = 0.0  # paced runs: not sent before this many seconds after the first send


@dataclass
class Account:
    jid: str
    password: str = field(repr=False)


@dataclass
class LoadConfig:
    host: str
    port: int
    cafile: Path
    senders: list[Account]
    recipients: list[Account]
    messages: int
    deadline: float = 300.0  # seconds for login + sending + waiting for acks
    inflight: int = 5  # unacknowledged messages per sender
    ack_window: int = 1  # XEP-0198: request an ack after this many stanzas
    direct_tls: bool = False
    allow_nets: list[str] = field(default_factory=list)
    resend: bool = True  # resend, after a reconnect, what was unacked at a disconnect
    login_timeout: float = 60.0
    verify_timeout: float = 180.0  # for the whole MAM audit
    reconnect_delay: float = 0.5
    stall_timeout: float = 60.0  # a stream with no progress for this long is aborted
    # Aggregate messages per second over all senders (None: as fast as the acks allow).
    # Message n is due n / rate seconds after the first send; resends are not paced.
    rate: float | None = None
    # Audit the archives when the load is done (False: the caller reads them itself).
    verify: bool = True


@dataclass
class Result:
    """What a run measured (JSON-serialisable through ``as_dict``)."""

    run_id: str
    senders: int
    recipients: int
    messages: int
    sent: int = 0  # messages sent at least once
    acked: int = 0
    found: int = 0  # acked messages found in the archives
    lost: int = 0  # acked, not found, no error stanza: must be 0
    found_unacked: int = 0  # in the archive although never acknowledged
    unacked: int = 0  # sent, never acknowledged (visible to the sender)
    never_sent: int = 0  # not sent before the deadline
    failed_visibly: int = 0  # send attempts whose connection died before the ack
    resent: int = 0
    duplicates: int = 0  # archive entries beyond the first per message id
    bounced: int = 0  # messages answered by an error stanza (the ack still counts)
    bounced_unarchived: int = 0  # acked, then refused with an error stanza: visible, not lost
    archive_entries: int = 0  # this run's entries in the recipients' archives
    paging_repeats: int = 0  # one archive entry returned twice by MAM paging (not counted)
    logins_failed: int = 0
    disconnects: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)
    unacked_ids: list[str] = field(default_factory=list)  # the visible failures, by id
    lost_ids: list[str] = field(default_factory=list)
    lost_detail: list[dict[str, Any]] = field(default_factory=list)  # the first few, in full
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    msgs_per_s: float | None = None
    send_seconds: float | None = None  # first send -> last ack
    login_seconds: float | None = None  # start -> all senders ready
    verify_seconds: float | None = None
    recovery_s: list[float] = field(default_factory=list)  # per disconnected client
    recovery_max_s: float | None = None
    recovery_p50_s: float | None = None
    back_after_s: float | None = None  # first disconnect -> last client's first ack after
    still_down: int = 0  # clients disconnected and never back by the deadline
    events: list[dict[str, Any]] = field(default_factory=list)  # timeline (s since start)
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def as_dict(self, with_latencies: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_latencies:
            d.pop("latencies_ms")
        return d


@dataclass
class Audit:
    """One reading of the recipients' archives against the acknowledgements."""

    found: int = 0
    lost: int = 0
    found_unacked: int = 0
    duplicates: int = 0
    archive_entries: int = 0
    paging_repeats: int = 0
    seconds: float = 0.0
    bounced_unarchived: int = 0
    lost_ids: list[str] = field(default_factory=list)
    lost_detail: list[dict[str, Any]] = field(default_factory=list)
    # Archive entries per message id of this run (what a checker of its own reads).
    counts: dict[str, int] = field(default_factory=dict, repr=False)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# ---------------------------------------------------------------------------- clients


def _configure(client: slixmpp.ClientXMPP, cfg: LoadConfig) -> None:
    client.ca_certs = Path(cfg.cafile)
    # slixmpp tries direct TLS first on whatever port it is given: choose one.
    client.enable_direct_tls = cfg.direct_tls
    client.enable_starttls = not cfg.direct_tls
    client.enable_plaintext = False
    # Never follow a see-other-host redirect: we only talk to the address we checked.
    client.max_redirects = -1


class Sender(slixmpp.ClientXMPP):
    """One load account: sends its share of the messages, reconnects on loss."""

    def __init__(self, gen: LoadGen, index: int, account: Account, resource: str) -> None:
        super().__init__(f"{account.jid}/{resource}", account.password)
        self.gen = gen
        self.index = index
        self.register_plugin("xep_0198")
        # slixmpp bug (1.17.0, xep_0198 _handle_outgoing): its automatic <r/> is
        # written with send_raw() from the out filter, i.e. BEFORE the stanza it
        # follows, so an ack never covers the latest message (the last one of a
        # burst stays unacked for ever).  Switch it off and queue our own <r/>
        # behind the messages instead (see _request_ack).
        sm = self.plugin["xep_0198"]
        sm.window = sm.window_counter = 2**31
        self._since_r = 0
        _configure(self, gen.cfg)
        self.todo: list[Message] = []  # not sent yet (popped from the end)
        self.resend_queue: list[Message] = []
        self.inflight: dict[str, Message] = {}
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()
        self.closing = False
        self.fatal: str | None = None
        self.ever_ready = False
        self.stream = 0  # counts streams (new sessions and resumptions) for the audit
        self.down_since: float | None = None
        self.not_ready_since: float | None = None
        self.last_progress = time.monotonic()
        self.add_event_handler("sm_enabled", self._on_sm_enabled)
        self.add_event_handler("session_resumed", self._on_resumed)
        self.add_event_handler("stanza_acked", self._on_acked)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("connected", self._on_connected)
        self.add_event_handler("message_error", self._on_message_error)
        self.add_event_handler("failed_auth", self._on_failed_auth)
        self.add_event_handler("ssl_invalid_chain", self._on_bad_cert)
        self.add_event_handler("connection_failed", self._on_connection_failed)

    # -- events
    def _on_connected(self, _event: Any) -> None:
        # Belt and braces: the socket must be the address that passed check_target.
        peer = self.transport.get_extra_info("peername") if self.transport else None
        if peer and str(peer[0]) not in self.gen.allowed_addrs:
            self.fatal = f"connected to unexpected address {peer[0]}"
            self.closing = True
            self._drop()

    def _on_sm_enabled(self, _event: Any) -> None:
        # A new session (first login, or a reconnect whose resumption failed):
        # whatever was in flight on the old stream is unacknowledged for good.
        now = time.monotonic()
        self.stream += 1
        for msg in self.inflight.values():
            msg.failed_attempts += 1
            self.gen.result.failed_visibly += 1
            if self.gen.cfg.resend:
                self.resend_queue.append(msg)
        self.inflight.clear()
        if self.ever_ready:
            self.gen.result.reconnects += 1
            self.gen.event("reconnected", sender=self.index, t=now)
        else:
            self.gen.event("session", sender=self.index, t=now)
        self.ever_ready = True
        self.last_progress = now
        self.ready.set()
        self.changed.set()

    def _on_resumed(self, _event: Any) -> None:
        # XEP-0198 resumption: slixmpp re-sends its unacked queue itself.
        self.stream += 1
        self.gen.result.reconnects += 1
        self.gen.event("resumed", sender=self.index)
        self.last_progress = time.monotonic()
        self.ready.set()
        self.changed.set()

    def _on_acked(self, stanza: Any) -> None:
        if stanza.name != "message":
            return
        msg = self.inflight.pop(stanza["id"], None)
        if msg is None or msg.acked_at is not None or msg.sent_at is None:
            return
        now = time.monotonic()
        msg.acked_at = now
        msg.acked_stream = self.stream
        msg.latency = now - msg.sent_at
        self.last_progress = now
        self.gen.on_ack(now)
        if self.down_since is not None:
            self.gen.result.recovery_s.append(now - self.down_since)
            self.gen.last_back = max(self.gen.last_back or now, now)
            self.down_since = None
        self.changed.set()

    def _on_disconnected(self, _event: Any) -> None:
        self.ready.clear()
        self.changed.set()
        if self.closing:
            return
        now = time.monotonic()
        self.gen.result.disconnects += 1
        if self.ever_ready and self.down_since is None:
            self.down_since = now
            if self.gen.first_disconnect is None:
                self.gen.first_disconnect = now
        self.gen.event("disconnected", sender=self.index, t=now)
        if now < self.gen.hard_deadline:
            self.loop.call_later(self.gen.cfg.reconnect_delay, self._reconnect)

    def _reconnect(self) -> None:
        if self.closing or self.transport is not None or time.monotonic() > self.gen.hard_deadline:
            return
        self.connect(self.gen.cfg.host, self.gen.cfg.port)

    def _on_message_error(self, msg: Any) -> None:
        rec = self.gen.messages.get(msg["id"])
        text = f"{msg['error']['condition']}: {msg['error']['text']}".strip(": ")
        if rec is not None and rec.bounced is None:
            rec.bounced = text
            self.gen.result.bounced += 1

    def _on_failed_auth(self, _event: Any) -> None:
        self._give_up(f"{self.boundjid.bare}: authentication failed")

    def _on_bad_cert(self, exc: Any) -> None:
        self._give_up(f"TLS certificate not trusted by {self.gen.cfg.cafile}: {exc}")

    def _on_connection_failed(self, exc: Any) -> None:
        if isinstance(exc, ssl.SSLCertVerificationError):
            self._give_up(f"TLS certificate not trusted by {self.gen.cfg.cafile}: {exc}")

    def _drop(self) -> None:
        """Drop the connection now.  Not slixmpp's abort(): it calls close() and then
        abort() on the transport, and an asyncio TLS transport's abort() after close()
        raises AttributeError (slixmpp 1.17.0)."""
        transport = self.transport
        if transport is not None:
            try:
                transport.abort()
            except Exception as exc:  # already closing
                log.debug("abort: %s", exc)

    def _give_up(self, why: str) -> None:
        self.fatal = why
        self.closing = True
        self.cancel_connection_attempt()
        self._drop()
        self.changed.set()

    # -- sending
    def _send_one(self, msg: Message) -> None:
        stanza = self.make_message(
            mto=msg.recipient, mbody=f"{BODY_PREFIX} {msg.mid}", mtype="chat"
        )
        stanza["id"] = msg.mid
        msg.attempts += 1
        if msg.attempts > 1:
            self.gen.result.resent += 1
        msg.sent_at = time.monotonic()
        msg.sent_stream = self.stream
        self.gen.on_send(msg.sent_at)
        self.inflight[msg.mid] = msg
        stanza.send()
        self._since_r += 1
        if self._since_r >= self.gen.cfg.ack_window:
            self._request_ack()

    def _request_ack(self) -> None:
        # Through the send queue (in order after the messages), not send_raw().
        self._since_r = 0
        self.send(sm_stanza.RequestAck(self))

    async def run(self) -> None:
        self.connect(self.gen.cfg.host, self.gen.cfg.port)
        while not self.closing:
            now = time.monotonic()
            if now >= self.gen.send_deadline:
                break
            if not self.todo and not self.resend_queue and not self.inflight:
                break  # all done
            self.changed.clear()
            self._watchdog(now)
            if self.ready.is_set():
                while len(self.inflight) < self.gen.cfg.inflight and (
                    self.resend_queue
                    or (self.todo and not self.gen.paused and self.gen.is_due(self.todo[-1], now))
                ):
                    self._send_one(
                        self.resend_queue.pop(0) if self.resend_queue else self.todo.pop()
                    )
                if self._since_r:
                    self._request_ack()
            wait = 0.5
            if self.todo and self.ready.is_set():
                wait = self.gen.wait_for(self.todo[-1], now, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), timeout=wait)

    def _watchdog(self, now: float) -> None:
        """slixmpp has no timeout for a stream that stalls (negotiation or acks):
        abort it, which reconnects like any other lost connection."""
        stall = self.gen.cfg.stall_timeout
        if not self.ready.is_set():
            if self.not_ready_since is None:
                self.not_ready_since = now
            elif now - self.not_ready_since > stall:
                self.not_ready_since = now
                self.gen.event("stalled", sender=self.index, phase="login")
                if self.transport is not None:
                    self._drop()
                else:
                    self.cancel_connection_attempt()
                    self.connect(self.gen.cfg.host, self.gen.cfg.port)
            return
        self.not_ready_since = None
        if self.inflight and now - self.last_progress > stall:
            self.last_progress = now
            self.gen.event("stalled", sender=self.index, phase="ack")
            self._drop()

    async def close(self) -> None:
        self.closing = True
        self.cancel_connection_attempt()
        if self.transport is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.disconnect(wait=2.0), timeout=5.0)
        if self.transport is not None:
            self._drop()


class Reader(slixmpp.ClientXMPP):
    """A recipient that logs in without presence and reads its MAM archive."""

    def __init__(self, cfg: LoadConfig, account: Account, resource: str) -> None:
        super().__init__(f"{account.jid}/{resource}", account.password)
        self.register_plugin("xep_0059")
        self.register_plugin("xep_0313")
        _configure(self, cfg)
        self.cfg = cfg
        self.started = asyncio.Event()
        self.fatal: str | None = None
        self.add_event_handler("session_start", lambda _e: self.started.set())
        self.add_event_handler("failed_auth", self._fail)
        self.add_event_handler("ssl_invalid_chain", self._fail)

    def _fail(self, event: Any) -> None:
        self.fatal = f"{self.boundjid.bare}: {event}"
        self.started.set()

    async def archive_ids(self, run_id: str, since: datetime) -> list[tuple[str, str]]:
        """(message id, archive id) of this run's messages in the archive since ``since``."""
        self.connect(self.cfg.host, self.cfg.port)
        try:
            await asyncio.wait_for(self.started.wait(), timeout=self.cfg.login_timeout)
            if self.fatal:
                raise LoadError(f"MAM reader login failed: {self.fatal}", EX_NOPERM)
            prefix = f"{BODY_PREFIX} {run_id}-"
            found: list[tuple[str, str]] = []
            seen = 0
            mam = self.plugin["xep_0313"]
            async for item in mam.iterate(start=since, rsm={"max": MAM_PAGE}):
                seen += 1
                body = item["mam_result"]["forwarded"]["stanza"]["body"]
                if body.startswith(prefix):
                    found.append((body[len(BODY_PREFIX) + 1 :], item["mam_result"]["id"]))
            # slixmpp's RSM iterator (xep_0059) ends silently on an error or timeout of
            # a page, which would turn into false "lost" messages: compare with the
            # count the server gives for the same query.
            iq = await mam.retrieve(start=since, rsm={"max": "0"}, timeout=60)
            count = iq["mam_fin"]["rsm"]["count"]
            if str(count).isdigit() and int(count) > seen:
                raise LoadError(
                    f"MAM audit of {self.boundjid.bare} incomplete: read {seen} of {count} "
                    "archive entries",
                    EX_UNAVAILABLE,
                )
            return found
        finally:
            self.disconnect(wait=1.0)


# ------------------------------------------------------------------------------ run


class LoadGen:
    """Drives one run. ``await LoadGen(cfg).run()`` returns a :class:`Result`."""

    def __init__(self, cfg: LoadConfig) -> None:
        if cfg.messages < 1 or not cfg.senders or not cfg.recipients:
            raise LoadError("need at least one message, sender and recipient", EX_USAGE)
        if cfg.inflight < 1 or cfg.ack_window < 1 or cfg.deadline <= 0:
            raise LoadError("--inflight, --ack-window and --deadline must be positive", EX_USAGE)
        if cfg.rate is not None and not cfg.rate > 0:
            raise LoadError("--rate must be positive", EX_USAGE)
        self.cfg = cfg
        self.allowed_addrs = set(check_target(cfg.host, cfg.allow_nets))
        self.run_id = secrets.token_hex(4)
        self.result = Result(self.run_id, len(cfg.senders), len(cfg.recipients), cfg.messages)
        self.messages: dict[str, Message] = {}
        self.t0 = time.monotonic()
        self.send_deadline = self.hard_deadline = self.t0 + cfg.deadline
        self.first_send: float | None = None
        self.last_ack: float | None = None
        self.first_disconnect: float | None = None
        self.last_back: float | None = None
        self.paused = False
        self.pace_origin: float | None = None  # paced runs: when the first message was due
        self.started_wall = datetime.now(UTC)
        self._milestones: list[tuple[int, Callable[[], Awaitable[None]]]] = []
        self._milestone_tasks: list[asyncio.Task[None]] = []

    def event(self, what: str, t: float | None = None, **info: Any) -> None:
        t = time.monotonic() if t is None else t
        self.result.events.append({"t": round(t - self.t0, 3), "event": what, **info})

    def at_acked(self, count: int, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` (a coroutine function) once ``count`` messages are acked."""
        self._milestones.append((count, action))

    def is_due(self, msg: Message, now: float) -> bool:
        """May ``msg`` be sent at ``now``?  Always, unless the run is paced (``rate``);
        the pace starts with the first sender that asks."""
        if self.cfg.rate is None:
            return True
        if self.pace_origin is None:
            self.pace_origin = now
        return now - self.pace_origin >= msg.due

    def wait_for(self, msg: Message, now: float, longest: float) -> float:
        """How long a sender may sleep before ``msg`` is due (at most ``longest``)."""
        if self.cfg.rate is None or self.pace_origin is None:
            return longest
        return min(longest, max(0.001, self.pace_origin + msg.due - now))

    def on_send(self, now: float) -> None:
        if self.first_send is None:
            self.first_send = now
            self.event("first send", t=now)

    def on_ack(self, now: float) -> None:
        self.result.acked += 1
        self.last_ack = now
        for item in list(self._milestones):
            count, action = item
            if self.result.acked >= count:
                self._milestones.remove(item)
                self.event("milestone", t=now, acked=self.result.acked)
                self._milestone_tasks.append(asyncio.ensure_future(action()))

    def _assign(self, senders: list[Sender]) -> None:
        recips = [a.jid for a in self.cfg.recipients]
        for n in range(self.cfg.messages):
            mid = f"{self.run_id}-{n:06d}"
            msg = Message(mid=mid, sender=n % len(senders), recipient=recips[n % len(recips)])
            if self.cfg.rate is not None:
                msg.due = n / self.cfg.rate
            self.messages[mid] = msg
            senders[msg.sender].todo.append(msg)
        for s in senders:
            s.todo.reverse()  # pop() from the end sends in id order

    async def run(self) -> Result:
        cfg, res = self.cfg, self.result
        self.started_wall = datetime.now(UTC)
        resource = f"load-{self.run_id}"
        senders = [Sender(self, i, a, resource) for i, a in enumerate(cfg.senders)]
        self._assign(senders)
        self.event("start")
        tasks = [asyncio.ensure_future(s.run()) for s in senders]
        try:
            # Logins: wait until every sender is ready (or has failed) before judging.
            login_deadline = self.t0 + min(cfg.login_timeout, cfg.deadline)
            while time.monotonic() < login_deadline:
                if all(s.ever_ready or s.fatal for s in senders):
                    break
                await asyncio.sleep(0.1)
            res.login_seconds = round(time.monotonic() - self.t0, 3)
            not_in = [s for s in senders if not s.ever_ready]
            res.logins_failed = len(not_in)
            for s in not_in:
                if s.fatal:
                    res.errors.append(s.fatal)
            if len(not_in) == len(senders):
                fatal = next((s.fatal for s in senders if s.fatal), None)
                if fatal:
                    raise LoadError(fatal, EX_NOPERM)
                raise LoadError(
                    f"no sender could log in at {cfg.host}:{cfg.port} within "
                    f"{cfg.login_timeout:.0f} s",
                    EX_UNAVAILABLE,
                )
            self.event("logged in", ready=len(senders) - len(not_in))
            remaining = self.hard_deadline - time.monotonic()
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=max(remaining, 0.1) + 5)
        except TimeoutError:
            res.errors.append("hard deadline reached while sending")
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for t in self._milestone_tasks:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        t, timeout=max(self.hard_deadline - time.monotonic(), 30)
                    )
            self.event("closing")
            await asyncio.gather(*(s.close() for s in senders), return_exceptions=True)
        for s in senders:
            if s.down_since is not None and (s.todo or s.resend_queue or s.inflight):
                res.still_down += 1
            if s.fatal and s.ever_ready:
                res.errors.append(s.fatal)
        if cfg.verify:
            await self._verify()
        self._summarise()
        return res

    async def audit(self) -> Audit:
        """Read the recipients' archives (MAM) and compare with what was acked.

        Can be called again after :meth:`run` (e.g. once a killed node is back) from a
        new event loop: ``asyncio.run(gen.audit())``.
        """
        t = time.monotonic()
        since = self.started_wall - timedelta(minutes=2)  # slack for clock differences
        counts: dict[str, int] = {}
        resource = f"audit-{self.run_id}-{secrets.token_hex(2)}"
        audit = Audit()

        async def one(account: Account) -> list[tuple[str, str]]:
            reader = Reader(self.cfg, account, resource)
            try:
                return await reader.archive_ids(self.run_id, since)
            except (IqError, IqTimeout) as exc:
                raise LoadError(
                    f"MAM query for {account.jid} failed: {exc}", EX_UNAVAILABLE
                ) from exc

        try:
            lists = await asyncio.wait_for(
                asyncio.gather(*(one(a) for a in self.cfg.recipients)),
                timeout=self.cfg.verify_timeout,
            )
        except TimeoutError as exc:
            raise LoadError(
                f"MAM audit did not finish within {self.cfg.verify_timeout:.0f} s", EX_UNAVAILABLE
            ) from exc
        entries: set[tuple[str, str]] = set()
        for pairs in lists:
            for pair in pairs:
                if pair in entries:  # the same archive entry read twice (paging)
                    audit.paging_repeats += 1
                    continue
                entries.add(pair)
                counts[pair[0]] = counts.get(pair[0], 0) + 1
        audit.archive_entries = sum(counts.values())
        audit.duplicates = sum(c - 1 for c in counts.values())
        for mid, msg in self.messages.items():
            if msg.acked_at is not None:
                if mid in counts:
                    audit.found += 1
                elif msg.bounced is not None:
                    # The server acknowledged it, then answered with an error stanza:
                    # the sender was told (xmpp-tool exits 76 for this), so it failed
                    # visibly; lost counts only what nobody was told about.
                    audit.bounced_unarchived += 1
                else:
                    audit.lost += 1
                    audit.lost_ids.append(mid)
                    if len(audit.lost_detail) < 20:
                        audit.lost_detail.append(self.describe_message(msg))
            elif mid in counts:
                audit.found_unacked += 1
        audit.seconds = round(time.monotonic() - t, 3)
        audit.counts = counts
        return audit

    def describe_message(self, msg: Message) -> dict[str, Any]:
        """One message's history, times in seconds since the start (as the events)."""

        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - self.t0, 3)

        return {
            "mid": msg.mid,
            "sender": msg.sender,
            "attempts": msg.attempts,
            "failed_attempts": msg.failed_attempts,
            "sent_t": rel(msg.sent_at),
            "acked_t": rel(msg.acked_at),
            "sent_stream": msg.sent_stream,
            "acked_stream": msg.acked_stream,
            "bounced": msg.bounced,
        }

    async def _verify(self) -> None:
        a = await self.audit()
        res = self.result
        res.found, res.lost, res.found_unacked = a.found, a.lost, a.found_unacked
        res.duplicates, res.archive_entries = a.duplicates, a.archive_entries
        res.paging_repeats, res.verify_seconds = a.paging_repeats, a.seconds
        res.lost_ids = a.lost_ids[:100]
        res.bounced_unarchived = a.bounced_unarchived
        res.lost_detail = a.lost_detail

    def _summarise(self) -> None:
        res = self.result
        lat = [m.latency * 1000.0 for m in self.messages.values() if m.latency is not None]
        res.latencies_ms = [round(v, 3) for v in lat]
        res.sent = sum(1 for m in self.messages.values() if m.attempts > 0)
        res.never_sent = res.messages - res.sent
        unacked = [m.mid for m in self.messages.values() if m.attempts and m.acked_at is None]
        res.unacked = len(unacked)
        res.unacked_ids = unacked[:100]
        for name, q in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("max_ms", 100)):
            v = percentile(lat, q)
            setattr(res, name, None if v is None else round(v, 2))
        if self.first_send is not None and self.last_ack is not None:
            span = self.last_ack - self.first_send
            res.send_seconds = round(span, 3)
            res.msgs_per_s = round(res.acked / span, 1) if span > 0 else None
        if res.recovery_s:
            res.recovery_s = [round(v, 3) for v in res.recovery_s]
            res.recovery_max_s = max(res.recovery_s)
            res.recovery_p50_s = percentile(res.recovery_s, 50)
        if self.first_disconnect is not None and self.last_back is not None:
            res.back_after_s = round(self.last_back - self.first_disconnect, 3)


def run_load(cfg: LoadConfig, setup: Callable[[LoadGen], None] | None = None) -> Result:
    """Run one load (blocking) with a process-wide safety net on the deadline."""
    gen = LoadGen(cfg)
    if setup is not None:
        setup(gen)
    budget = cfg.deadline + cfg.verify_timeout + 60.0
    return asyncio.run(asyncio.wait_for(gen.run(), timeout=budget))


def format_result(res: Result) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f} ms"

    lines = [
        f"run {res.run_id}: {res.senders} senders -> {res.recipients} recipients, "
        f"{res.messages} messages",
        f"  acked {res.acked}   found {res.found}   LOST {res.lost}   duplicates {res.duplicates}"
        f"   (MAM paging repeats {res.paging_repeats})",
        f"  unacked {res.unacked} (found anyway {res.found_unacked})   never sent "
        f"{res.never_sent}   failed visibly {res.failed_visibly} (resent {res.resent})   "
        f"bounced {res.bounced} (acked, refused, not archived {res.bounced_unarchived})",
        f"  ack latency p50 {ms(res.p50_ms)}  p90 {ms(res.p90_ms)}  p99 {ms(res.p99_ms)}  "
        f"max {ms(res.max_ms)}",
        f"  {res.msgs_per_s if res.msgs_per_s is not None else '-'} msgs/s over "
        f"{res.send_seconds} s (logins {res.login_seconds} s, MAM audit {res.verify_seconds} s)",
    ]
    if res.disconnects:
        lines.append(
            f"  disconnects {res.disconnects}, reconnects {res.reconnects}, clients back: "
            f"{len(res.recovery_s)} (p50 {res.recovery_p50_s} s, max {res.recovery_max_s} s), "
            f"first disconnect -> last client back {res.back_after_s} s, still down "
            f"{res.still_down}"
        )
    if res.logins_failed:
        lines.append(f"  logins failed: {res.logins_failed}")
    lines.extend(f"  error: {e}" for e in res.errors[:10])
    return "\n".join(lines)


# ------------------------------------------------------------------------------- CLI


def read_password(password_file: Path | None) -> str:
    env = os.environ.get("XMPP_TOOL_PASSWORD")
    if env:
        return env
    if password_file is None:
        raise LoadError("set XMPP_TOOL_PASSWORD or give --password-file", EX_CONFIG)
    try:
        st = password_file.stat()
        if st.st_mode & 0o077:
            raise LoadError(
                f"{password_file}: must not be readable by others (chmod 600)", EX_CONFIG
            )
        text = password_file.read_text().strip()
    except OSError as exc:
        raise LoadError(f"{password_file}: {exc.strerror}", EX_CONFIG) from exc
    if not text:
        raise LoadError(f"{password_file}: empty", EX_CONFIG)
    return text


def accounts(prefix: str, count: int, domain: str, password: str) -> list[Account]:
    return [Account(f"{prefix}{i}@{domain}", password) for i in range(count)]


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LoadError(f"--server {text!r}: expected HOST:PORT", EX_USAGE)
    return host.strip("[]"), int(port)


@contextlib.contextmanager
def local_ejabberd(prefix: str, rprefix: str, n: int, r: int, password: str) -> Iterator[Any]:
    """A throwaway ejabberd on loopback (lab/servers.py) with the accounts."""
    from lab import servers

    try:
        cm = servers.running_servers("ejabberd")
        started = cm.__enter__()
    except servers.ServerError as exc:
        raise LoadError(f"local ejabberd: {exc}", EX_UNAVAILABLE) from exc
    try:
        srv = started["ejabberd"]
        users = {f"{prefix}{i}": password for i in range(n)}
        users.update({f"{rprefix}{i}": password for i in range(r)})
        try:
            srv.register_many(users)  # a XEP-0227 import: no password on a command line
        except servers.ServerError as exc:
            raise LoadError(f"local ejabberd accounts: {exc}", EX_UNAVAILABLE) from exc
        yield srv
    finally:
        cm.__exit__(None, None, None)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.loadgen",
        description=(
            "XMPP load generator: concurrent senders with XEP-0198 acks, then a MAM audit "
            "of the recipients' archives (lost = acknowledged, not archived, never refused). "
            "Password of all load accounts: $XMPP_TOOL_PASSWORD or --password-file."
        ),
        epilog=(
            "exit codes: 0 done and lost == 0, 1 lost > 0, 64 usage, 69 unreachable, "
            "77 TLS/auth failure, 78 bad password file"
        ),
    )
    p.add_argument(
        "--server", metavar="HOST:PORT", help="where to connect (loopback or --allow-net)"
    )
    p.add_argument("--domain", help="XMPP domain of the accounts (certificate name)")
    p.add_argument("--cafile", type=Path, help="CA certificate that must sign the server's")
    p.add_argument("--direct-tls", action="store_true", help="XEP-0368 direct TLS (else STARTTLS)")
    p.add_argument(
        "--allow-net",
        action="append",
        default=[],
        metavar="CIDR",
        help="private network the target may be in besides loopback (repeatable)",
    )
    p.add_argument("--senders", type=int, default=100, help="concurrent senders (default 100)")
    p.add_argument("--recipients", type=int, default=20, help="recipient accounts (default 20)")
    p.add_argument("--messages", type=int, default=10_000, help="messages in total (default 10000)")
    p.add_argument(
        "--deadline",
        type=float,
        default=300.0,
        help="hard limit in seconds for logins + sending + acks (default 300)",
    )
    p.add_argument(
        "--inflight", type=int, default=5, help="unacknowledged messages per sender (default 5)"
    )
    p.add_argument(
        "--rate",
        type=float,
        metavar="MSGS_PER_S",
        help="pace the senders to this many messages per second in all (default: unpaced)",
    )
    p.add_argument(
        "--ack-window",
        type=int,
        default=1,
        help="XEP-0198: request an ack every N stanzas (default 1)",
    )
    p.add_argument(
        "--no-resend",
        dest="resend",
        action="store_false",
        help="do not resend messages unacked at a disconnect",
    )
    p.add_argument("--sender-prefix", default="load", help="sender accounts PREFIX0.. (load)")
    p.add_argument(
        "--recipient-prefix", default="loadrcpt", help="recipient accounts PREFIX0.. (loadrcpt)"
    )
    p.add_argument(
        "--password-file", type=Path, help="file (mode 0600) with the accounts' password"
    )
    p.add_argument(
        "--local-ejabberd",
        action="store_true",
        help="start a throwaway ejabberd on loopback with the accounts and load it",
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the result as JSON")
    p.add_argument("--latencies", action="store_true", help="include every latency in --json")
    p.add_argument("-v", "--verbose", action="store_true", help="log slixmpp warnings")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return EX_OK if exc.code == 0 else EX_USAGE
    logging.basicConfig(
        level=logging.WARNING if args.verbose else logging.CRITICAL,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        if args.senders < 1 or args.recipients < 1 or args.messages < 1:
            raise LoadError("--senders, --recipients and --messages must be >= 1", EX_USAGE)
        if args.rate is not None and args.rate <= 0:  # LoadGen checks too, but after set-up
            raise LoadError("--rate must be positive", EX_USAGE)
        with contextlib.ExitStack() as stack:
            if args.local_ejabberd:
                password = os.environ.get("XMPP_TOOL_PASSWORD") or secrets.token_urlsafe(12)
                srv = stack.enter_context(
                    local_ejabberd(args.sender_prefix, args.recipient_prefix, args.senders,
                                   args.recipients, password)
                )  # fmt: skip
                host, port = srv.host, (srv.tls_port if args.direct_tls else srv.port)
                domain, cafile = srv.domain, Path(srv.cafile)
            else:
                if not (args.server and args.domain and args.cafile):
                    raise LoadError("--server, --domain and --cafile are required", EX_USAGE)
                host, port = _host_port(args.server)
                check_target(host, args.allow_net)  # before anything else is read
                domain, cafile = args.domain, args.cafile
                if not cafile.is_file():
                    raise LoadError(f"--cafile {cafile}: no such file", EX_USAGE)
                password = read_password(args.password_file)
            cfg = LoadConfig(
                host=host,
                port=port,
                cafile=cafile,
                senders=accounts(args.sender_prefix, args.senders, domain, password),
                recipients=accounts(args.recipient_prefix, args.recipients, domain, password),
                messages=args.messages,
                deadline=args.deadline,
                inflight=args.inflight,
                ack_window=args.ack_window,
                direct_tls=args.direct_tls,
                allow_nets=args.allow_net,
                resend=args.resend,
                rate=args.rate,
            )
            res = run_load(cfg)
    except LoadError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("loadgen: interrupted", file=sys.stderr)
        return 130
    print(format_result(res))
    if args.json:
        args.json.write_text(json.dumps(res.as_dict(args.latencies), indent=1) + "\n")
    return EX_LOST if res.lost else EX_OK


if __name__ == "__main__":
    sys.exit(main())
