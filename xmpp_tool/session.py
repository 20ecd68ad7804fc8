"""One authenticated XMPP client stream (slixmpp), set up to fail fast and safely.

- TLS is always verified: the system store, a CA file (``-C``/``cafile``, which then
  replaces the system store), or a SHA-256 pin of the server certificate.
- STARTTLS by default (``enable_direct_tls = False``: slixmpp would otherwise try
  direct TLS first on the STARTTLS port); direct TLS (XEP-0368) with ``-t``.
- SCRAM is preferred; PLAIN is only used inside TLS (slixmpp refuses both SCRAM and
  PLAIN on an unencrypted stream, so a server that drops STARTTLS gets no password).
- No presence, no roster, no disco unless an action asks for it.
- slixmpp reports most failures as events, not exceptions (a wrong certificate
  only emits ``ssl_invalid_chain`` and the session never starts); they are turned
  into a :class:`~xmpp_tool.errors.ToolError` with the right exit code at once.

One lifecycle for every action (send, rooms, upload, unread): :func:`run_session`
opens the session on a fresh event loop, hands it to the action, and closes it
whatever happens.  What several actions need of an open session is here once:
:meth:`Session.guard` (a request that may fail, time out or outlive the
connection), :meth:`Session.events` (event handlers for the length of a step),
:meth:`Session.disco_features` (XEP-0030 feature checks).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

from . import errors, password, slix
from .config import Settings

log = logging.getLogger("xmpp_tool")
T = TypeVar("T")

#: SASL mechanisms we accept, best first by slixmpp's own scoring (SCRAM > PLAIN).
#: DIGEST-MD5/CRAM-MD5/ANONYMOUS/X-OAUTH2 are never used.
SASL_MECHS = {
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-1",
    "PLAIN",
}


def tls_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context: verified against the system store or ``cafile``; with a
    fingerprint pin the chain is not checked but the certificate's SHA-256 is
    (see :meth:`Session._check_pin`), before anything is sent over it."""
    if settings.fingerprint:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    try:
        if settings.cafile is not None:
            ctx = ssl.create_default_context(cafile=str(settings.cafile))
        else:
            ctx = ssl.create_default_context()
    except (ssl.SSLError, OSError) as exc:
        raise errors.config(f"cannot load CA file {settings.cafile}: {exc}") from None
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _cert_reason(exc: BaseException | None) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    return str(exc) if exc else "unknown error"


class Session:
    """Connect, authenticate and bind; then ``client`` is ready for stanzas."""

    def __init__(
        self,
        settings: Settings,
        password: str,
        plugins: Iterable[str],
        plugin_config: dict[str, dict[str, Any]] | None = None,
        unused_handlers: Iterable[str] = (),
    ) -> None:
        """``unused_handlers``: slixmpp's stanza handlers for events the action
        never uses; they are removed (slixmpp matches every incoming stanza
        against every handler)."""
        slix.prepare(need_dns=settings.host is None)
        self.settings = settings
        self.jid = slix.jid_or_error(settings.jid, "account JID")
        if not self.jid.user:
            raise errors.dataerr(f"invalid account JID {settings.jid!r}: no user part")
        self.loop = asyncio.get_running_loop()
        self.failure: asyncio.Future[errors.ToolError] = self.loop.create_future()
        self.negotiated: asyncio.Future[None] = self.loop.create_future()
        self._last_connect_error: BaseException | str | None = None
        self._closing = False

        config: dict[str, dict[str, Any]] = {
            "feature_mechanisms": {"use_mechs": set(SASL_MECHS)},
        }
        config.update(plugin_config or {})
        # (our context from the start: slixmpp's default one would load the
        # system CA store first, for nothing when a CA file or pin is used)
        client = slix.ClientXMPP(
            self.jid.bare, password, plugin_config=config, ssl_context=tls_context(settings)
        )
        self.client: Any = client
        client.enable_plaintext = False
        client.enable_direct_tls = settings.direct_tls
        client.enable_starttls = not settings.direct_tls
        if settings.direct_tls:
            client.default_port = 5223
        client.whitespace_keepalive = False
        client.max_redirects = -1  # never follow see-other-host (it would change the TLS name)
        for name in plugins:
            client.register_plugin(name)
        for name in unused_handlers:
            client.remove_handler(name)

        client.add_event_handler("connection_failed", self._on_connection_failed)
        client.add_event_handler("reconnect_delay", self._on_reconnect_delay)
        client.add_event_handler("ssl_invalid_chain", self._on_invalid_chain)
        client.add_event_handler("ssl_cert", self._check_pin)
        client.add_event_handler("tls_success", self._on_tls_success)
        client.add_event_handler("failed_auth", self._on_failed_auth)
        client.add_event_handler("no_auth", self._on_no_auth)
        client.add_event_handler("auth_success", self._on_auth_success)
        client.add_event_handler("stream_error", self._on_stream_error)
        client.add_event_handler("disconnected", self._on_closed)
        client.add_event_handler("stream_negotiated", self._on_negotiated)

    # ------------------------------------------------------------------ failures

    def fail(self, err: errors.ToolError) -> None:
        """Record the first failure and drop the connection."""
        if not self.failure.done():
            log.debug("failing: %s", err.message)
            self.failure.set_result(err)
        self._drop()

    def _drop(self) -> None:
        """Drop the connection now.  (Not slixmpp's abort(): it calls close() and
        then abort() on the transport, and an asyncio TLS transport's abort()
        after close() raises AttributeError.)"""
        client = self.client
        client.cancel_connection_attempt()
        transport = client.transport
        if transport is not None:
            try:
                transport.abort()
            except Exception as exc:  # already closing
                log.debug("abort: %s", exc)

    def _tls_failure(self, error: BaseException) -> errors.ToolError:
        if isinstance(error, ssl.SSLCertVerificationError):
            return errors.noperm(f"TLS certificate verification failed: {_cert_reason(error)}")
        reason = getattr(error, "reason", None) or str(error)
        hint = " (STARTTLS port given with -t?)" if self.settings.direct_tls else ""
        return errors.unavailable(f"TLS handshake with {self._where()} failed: {reason}{hint}")

    def _on_connection_failed(self, error: Any) -> None:
        log.info("connection attempt failed: %s", error)
        if isinstance(error, ssl.SSLError):
            # direct TLS: the certificate check happens inside the connect
            self.fail(self._tls_failure(error))
            return
        self._last_connect_error = error

    def _on_reconnect_delay(self, _delay: Any) -> None:
        # slixmpp retries forever with back-off once every address failed; we don't.
        err = self._last_connect_error
        where = self._where()
        if isinstance(err, OSError) and err.strerror:
            reason = err.strerror
        else:
            reason = str(err) if err else "connection failed"
        self.fail(errors.unavailable(f"cannot connect to {where}: {reason}"))

    def _on_invalid_chain(self, exc: Any) -> None:
        if isinstance(exc, ssl.SSLError):
            self.fail(self._tls_failure(exc))
        else:
            self.fail(errors.noperm(f"TLS certificate verification failed: {exc}"))

    def _check_pin(self, pem: str) -> None:
        log.info("TLS certificate received")
        pin = self.settings.fingerprint
        if not pin:
            return
        digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()
        if digest != pin:
            self.fail(
                errors.noperm(
                    "TLS certificate does not match the configured fingerprint "
                    f"(server's is sha256:{digest})"
                )
            )
        else:
            log.info("TLS certificate matches the pinned fingerprint")

    def _on_tls_success(self, _e: Any) -> None:
        log.info("TLS established")
        # slixmpp writes the new stream header right after this event: later, then
        self.loop.call_soon(self._ack_promptly)

    def _ack_promptly(self) -> None:
        """Leave Linux's delayed-ACK mode once TLS is up and our header is out.

        With TLS 1.3 the server sends its session tickets after our Finished and
        then answers the stream header we sent meanwhile.  A server with Nagle's
        algorithm on (prosody: ``network_settings.nagle``, on by default) holds
        that answer until the tickets are acknowledged, and Linux delays that ACK
        by 40 ms because we had just sent data: 45 ms of every login to prosody,
        for go-sendxmpp too.  TCP_QUICKACK makes the kernel acknowledge the
        tickets as soon as they are read."""
        option = getattr(socket, "TCP_QUICKACK", None)  # Linux only
        transport = self.client.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if option is None or sock is None:
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, 1)
        except OSError as exc:  # not TCP (a test double), or already closed
            log.debug("TCP_QUICKACK: %s", exc)

    def _on_failed_auth(self, stanza: Any) -> None:
        self.fail(errors.noperm(f"authentication failed for {self.jid.bare}: "
                                f"{errors.describe(stanza, 'failure')}"))

    def _on_no_auth(self, _e: Any) -> None:
        self.fail(
            errors.noperm(
                "no acceptable authentication: SCRAM, or PLAIN inside TLS, is required"
            )
        )

    def _on_auth_success(self, _e: Any) -> None:
        mech = self.client.plugin["feature_mechanisms"].mech
        log.info("authenticated as %s (%s)", self.jid.bare, getattr(mech, "name", "?"))

    def _on_stream_error(self, error: Any) -> None:
        self.fail(errors.protocol(f"server closed the stream: {errors.describe(error)}"))

    def _on_closed(self, reason: Any) -> None:
        if self._closing:
            return
        if isinstance(reason, ssl.SSLError):
            # STARTTLS: the handshake error surfaces as the connection's loss,
            # before slixmpp's own ssl_invalid_chain event
            self.fail(self._tls_failure(reason))
        elif not self.negotiated.done():
            self.fail(errors.unavailable(f"connection to {self._where()} closed during login"))
        else:
            self.fail(errors.tempfail("connection closed by the server"))

    def _on_negotiated(self, _e: Any) -> None:
        if not self.negotiated.done():
            self.negotiated.set_result(None)

    def _where(self) -> str:
        s = self.settings
        if s.host:
            host = f"[{s.host}]" if ":" in s.host else s.host
            return f"{host}:{s.port or self.client.default_port}"
        return f"{self.jid.domain} (DNS SRV, then the domain)"

    # ------------------------------------------------------------------ running

    async def guard(self, aw: Awaitable[T], what: str, timeout: float | None = None) -> T:
        """Await ``aw`` but give up on a session failure or after ``timeout``.  An
        error answer is :class:`~xmpp_tool.errors.Refused` (76), none 75."""
        task: asyncio.Future[T] = asyncio.ensure_future(aw)
        timeout = self.settings.timeout if timeout is None else timeout
        waiting: set[asyncio.Future[Any]] = {task, self.failure}
        done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            try:
                return task.result()
            except slix.IqError as exc:
                raise errors.Refused(what, exc.iq["error"]) from None
            except slix.IqTimeout:
                raise errors.tempfail(f"{what}: no answer from the server") from None
        task.cancel()
        if self.failure.done():
            raise self.failure.result()
        raise errors.tempfail(f"{what}: timed out after {timeout:g} s")

    @contextmanager
    def events(self, handlers: Mapping[str, Callable[[Any], None]]) -> Iterator[None]:
        """``handlers`` (event name -> handler) for the length of the ``with``."""
        for event, handler in handlers.items():
            self.client.add_event_handler(event, handler)
        try:
            yield
        finally:
            for event, handler in handlers.items():
                self.client.del_event_handler(event, handler)

    async def disco_features(self, jid: Any, what: str) -> set[str]:
        """The features ``jid`` announces in its disco#info (XEP-0030).  An error
        answer is :class:`~xmpp_tool.errors.Refused` with its condition."""
        disco = self.client.plugin["xep_0030"]
        info = await self.guard(
            disco.get_info(jid=jid, local=False, timeout=self.settings.timeout), what)
        return set(info["disco_info"]["features"])

    async def __aenter__(self) -> Session:
        try:
            await self.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, _type: type[BaseException] | None,
                        _exc: BaseException | None, _tb: TracebackType | None) -> None:
        await self.close()

    async def start(self) -> None:
        s = self.settings
        log.info(
            "connecting to %s with %s as %s",
            self._where(),
            "direct TLS" if s.direct_tls else "STARTTLS",
            self.jid.bare,
        )
        self.client.connect(host=s.host, port=s.port or self.client.default_port)
        await self.guard(self.negotiated, "login")
        if not self.client.authenticated:  # the server offered no SASL at all
            raise errors.noperm("not authenticated")
        log.info("session started as %s", self.client.boundjid)

    async def close(self) -> None:
        """End the stream, then drop the connection once our closing tag is out.

        Not waiting for the server's own end of stream (nor for a TLS close_notify
        round trip) saves ~0.1 s on ejabberd, which sends its closing tag that much
        later; by now the server has acknowledged everything we sent.
        """
        self._closing = True
        client = self.client
        transport = client.transport
        if transport is None or transport.is_closing():
            self._drop()
            return
        try:
            client.send_raw(client.stream_footer)
            for _ in range(50):  # at most ~0.5 s for a congested socket
                if transport.get_write_buffer_size() == 0:
                    break
                await asyncio.sleep(0.01)
        except Exception as exc:  # closing must never raise
            log.debug("close: %s", exc)
        self._drop()


def quiet_loop_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Never let asyncio print "Task exception was never retrieved" tracebacks."""

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        log.debug("asyncio: %s", context.get("message") or context.get("exception"))

    loop.set_exception_handler(handler)


def in_fresh_loop(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Await ``coro_factory()`` on a fresh event loop, silencing asyncio's stray reports."""

    async def main() -> T:
        quiet_loop_errors(asyncio.get_running_loop())
        return await coro_factory()

    return asyncio.run(main())


def run_session(
    settings: Settings,
    secret: str,
    plugins: Iterable[str],
    action: Callable[[Session], Awaitable[T]],
    *,
    plugin_config: dict[str, dict[str, Any]] | None = None,
    unused_handlers: Iterable[str] = (),
) -> T:
    """Open a session, ``action`` on it, close it: the lifecycle of every action."""

    async def main() -> T:
        async with Session(settings, secret, plugins, plugin_config,
                           unused_handlers) as session:  # fmt: skip
            return await action(session)

    return in_fresh_loop(main)


def login_password(settings: Settings) -> str:
    """Before any session: the account's JID must be valid (65, without asking
    for a password), then the password is obtained."""
    slix.jid_or_error(settings.jid, "account JID")
    return password.obtain(settings)
