"""Command line (Typer), POSIX Utility Argument Syntax.

    xmpp-tool [-s host[:port]] [-u jid] [-f config] [-a account] [-C cafile] [-t] [-J]
              [-v|-q] unread [-c] [-m] [-n max]
    xmpp-tool [global options] send [-T type] [-S subject] recipient [message|-]
    xmpp-tool [global options] send [-T type] [-S subject] [-g [-N nick]]
              (-m message|- | -F file) recipient...

A ``send`` without ``-m`` or ``-F`` keeps the one-recipient form: its second
operand is the message.  With ``-m`` or ``-F`` every operand is a recipient, so
no operand is ever both (POSIX operands stay unambiguous).

Option parsing stops at the first operand, both for the global options and for the
command's options (``allow_interspersed_args=False``); ``--`` ends options; ``-`` is
standard input.  Typer only parses: :func:`parse` returns a request and
:func:`run` does the work, so every failure is one line and a documented code.

Typer is imported only when it has to parse: the common ``send`` command line is
recognised by :mod:`xmpp_tool.fastargs`, which hands everything else to Typer.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO, TextIO

from . import __version__, completion, errors, fastargs
from .config import CliOptions
from .errors import EXIT_CODES, Exit, ToolError

if TYPE_CHECKING:  # at run time, _LazyTyper.build() binds ``typer`` here
    import typer

PROG = "xmpp-tool"

POSIX = {"allow_interspersed_args": False, "help_option_names": ["-h", "--help"]}

EPILOG = (
    "\b\nExit status:\n"
    + "\n".join(f"  {code:<3} {text}" for code, text in EXIT_CODES.items())
    + "\n\n\b\nPassword (never on the command line), the first of: environment\n"
    "XMPP_TOOL_PASSWORD; the account's password_command, password_file, or\n"
    "password (only if the config file is not readable by group/others);\n"
    "else a prompt on the terminal.\n"
    "\n\b\nConfig: $XDG_CONFIG_HOME/xmpp-tool/config.toml (default\n"
    "~/.config/xmpp-tool/config.toml), named accounts; options override it."
)


MESSAGE_TYPES = ("chat", "normal", "headline")


@dataclass(frozen=True)
class SendRequest:
    opts: CliOptions
    recipients: tuple[str, ...]
    message: str | None  # None or "-": standard input (unused with a file)
    mtype: str = "chat"  # chat, normal, headline; groupchat with -g
    subject: str | None = None
    groupchat: bool = False  # the recipients are rooms (XEP-0045)
    nick: str | None = None  # nickname in the rooms (default: the account's localpart)
    file: str | None = None  # upload (XEP-0363) and send its URL

    @property
    def recipient(self) -> str:
        return self.recipients[0]


@dataclass(frozen=True)
class UnreadRequest:
    opts: CliOptions
    count: bool
    mark: bool
    limit: int | None


Request = SendRequest | UnreadRequest
_Func = Callable[..., Any]


class _LazyTyper:
    """The part of ``typer.Typer`` this module uses, made real on first use.

    ``import typer`` costs ~15 ms of CPU here and building the command ~5 ms more,
    a third of a whole ``send``.  ``@app.callback()``/``@app.command()`` are
    recorded at import time and replayed onto a real Typer only when Typer has
    to parse.  Until then the parameters' ``Annotated[..., typer.Option(...)]``
    are plain strings (``from __future__ import annotations``; so no ``typer.``
    in default values here); Typer evaluates them in this module's namespace,
    where :meth:`build` puts ``typer``.
    """

    def __init__(self, **settings: Any) -> None:
        self._settings = settings
        self._recorded: list[tuple[str, tuple[Any, ...], dict[str, Any], _Func]] = []
        self._app: typer.Typer | None = None

    def _recorder(
        self, kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Callable[[_Func], _Func]:
        def record(func: _Func) -> _Func:
            self._recorded.append((kind, args, kwargs, func))
            return func

        return record

    def callback(self, *args: Any, **kwargs: Any) -> Callable[[_Func], _Func]:
        return self._recorder("callback", args, kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Callable[[_Func], _Func]:
        return self._recorder("command", args, kwargs)

    def build(self) -> typer.Typer:
        if self._app is None:
            import typer

            globals()["typer"] = typer
            app = typer.Typer(**self._settings)
            for kind, args, kwargs, func in self._recorded:
                getattr(app, kind)(*args, **kwargs)(func)
            self._app = app
        return self._app


app = _LazyTyper(
    name=PROG,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings=POSIX,
    help="Send XMPP messages and list unread ones, safely, from scripts.",
    epilog=EPILOG,
)


def _version(value: bool) -> None:
    import typer

    if value:
        typer.echo(f"{PROG} {__version__}")
        raise typer.Exit(0)


@app.callback()
def global_options(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option("-s", "--server", metavar="HOST[:PORT]",
                     help="Server to connect to (default: DNS SRV of the JID's domain, "
                          "then the domain itself)."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("-u", "--user", metavar="JID", help="The account's JID.")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("-f", "--config", metavar="FILE",
                     help="Config file (default: $XDG_CONFIG_HOME/xmpp-tool/config.toml)."),
    ] = None,
    account: Annotated[
        str | None,
        typer.Option("-a", "--account", metavar="NAME", help="Named account in the config file."),
    ] = None,
    cafile: Annotated[
        str | None,
        typer.Option("-C", "--cafile", metavar="FILE",
                     help="CA certificates to trust (instead of the system store)."),
    ] = None,
    direct_tls: Annotated[
        bool, typer.Option("-t", "--direct-tls", help="Direct TLS (XEP-0368) instead of STARTTLS.")
    ] = False,
    json: Annotated[
        bool, typer.Option("-J", "--json", help="JSON lines on standard output.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", help="More detail on standard error (never secrets).")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="Only errors on standard error.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Send XMPP messages and list unread ones, safely, from scripts."""
    ctx.ensure_object(dict)
    ctx.obj["opts"] = cli_options(
        server=server, user=user, config=config, account=account, cafile=cafile,
        direct_tls=direct_tls, json=json, verbose=verbose, quiet=quiet,
    )  # fmt: skip


def cli_options(
    *,
    server: str | None = None,
    user: str | None = None,
    config: str | None = None,
    account: str | None = None,
    cafile: str | None = None,
    direct_tls: bool = False,
    json: bool = False,
    verbose: bool = False,
    quiet: bool = False,
) -> CliOptions:
    """The global options as parsed (by Typer or by :mod:`.fastargs`)."""
    if verbose and quiet:
        raise errors.usage("-v and -q are mutually exclusive")
    return CliOptions(
        server=server,
        user=user,
        config=Path(config) if config is not None else None,
        account=account,
        cafile=Path(cafile) if cafile is not None else None,
        direct_tls=direct_tls,
        json=json,
        verbose=verbose,
        quiet=quiet,
    )


@app.command("send", context_settings=POSIX, epilog=EPILOG)
def send_command(
    ctx: typer.Context,
    message: Annotated[
        str | None,
        typer.Option("-m", "--message", metavar="MESSAGE|-",
                     help="The body (- for standard input); then every operand is a "
                          "recipient."),
    ] = None,
    file: Annotated[
        str | None,
        typer.Option("-F", "--file", metavar="FILE",
                     help="Upload FILE (XEP-0363) and send its URL; every operand is a "
                          "recipient."),
    ] = None,
    mtype: Annotated[
        str | None,
        typer.Option("-T", "--type", metavar="TYPE", autocompletion=completion.complete_type,
                     help="Message type: chat (default), normal or headline."),
    ] = None,
    subject: Annotated[
        str | None, typer.Option("-S", "--subject", metavar="SUBJECT", help="Subject line.")
    ] = None,
    groupchat: Annotated[
        bool,
        typer.Option("-g", "--groupchat",
                     help="The recipients are group chats (XEP-0045 rooms): join, send, "
                          "wait for the room's echo, leave."),
    ] = False,
    nick: Annotated[
        str | None,
        typer.Option("-N", "--nick", metavar="NICK",
                     help="Nickname in the rooms (default: the account's localpart)."),
    ] = None,
    operands: Annotated[
        list[str] | None,
        typer.Argument(metavar="RECIPIENT [MESSAGE|-] | RECIPIENT", show_default=False,
                       help="Without -m and -F: one recipient and the message (- or "
                            "absent: standard input); with -m or -F: the recipients."),
    ] = None,
) -> None:
    """Send a message to each RECIPIENT's bare JID (or room with -g) over one login;
    exit 0 only once the server has acknowledged every one (a room: once it has
    reflected the message).  Without -m or -F: one RECIPIENT, and the body is
    MESSAGE, or standard input if MESSAGE is absent or -.  A room's password comes
    from the environment variable XMPP_TOOL_ROOM_PASSWORD or the account's
    room_password_command/room_password_file, never the command line."""
    ctx.obj["request"] = send_request(
        ctx.obj["opts"], list(operands or ()), message=message, file=file, mtype=mtype,
        subject=subject, groupchat=groupchat, nick=nick,
    )  # fmt: skip


def send_request(
    opts: CliOptions,
    operands: list[str],
    *,
    message: str | None = None,
    file: str | None = None,
    mtype: str | None = None,
    subject: str | None = None,
    groupchat: bool = False,
    nick: str | None = None,
) -> SendRequest:
    """The ``send`` request from its options and operands (usage errors: 64)."""
    if message is not None and file is not None:
        raise errors.usage("-m and -F are mutually exclusive (the body of a file is its URL)")
    if mtype is not None and mtype not in MESSAGE_TYPES:
        raise errors.usage(f"-T: {mtype!r} is not one of {', '.join(MESSAGE_TYPES)}")
    if groupchat and mtype is not None:
        raise errors.usage("-T cannot be combined with -g (group chat messages are groupchat)")
    if groupchat and subject is not None:
        raise errors.usage("-S cannot be combined with -g (it would change the room's topic)")
    if nick is not None and not groupchat:
        raise errors.usage("-N needs -g")
    if nick is not None and not nick.strip():
        raise errors.usage("-N: empty nickname")
    if message is not None or file is not None:
        if not operands:
            raise errors.usage("missing RECIPIENT")
        recipients, body = tuple(operands), message
    else:
        if not operands:
            raise errors.usage("missing RECIPIENT")
        if len(operands) > 2:
            raise errors.usage(
                f"{len(operands)} operands: to send to several recipients give the message "
                "with -m (-m - for standard input)"
            )
        recipients, body = (operands[0],), operands[1] if len(operands) == 2 else None
    return SendRequest(opts, recipients, body, "groupchat" if groupchat else (mtype or "chat"),
                       subject, groupchat, nick, file)  # fmt: skip


@app.command("unread", context_settings=POSIX, epilog=EPILOG)
def unread_command(
    ctx: typer.Context,
    count: Annotated[
        bool, typer.Option("-c", "--count", help="Print only the count (per contact with -J).")
    ] = False,
    mark: Annotated[
        bool, typer.Option("-m", "--mark-read",
                           help="Mark the shown messages as read (XEP-0490 pointers).")
    ] = False,
    limit_text: Annotated[
        str | None,
        typer.Option("-n", "--max", metavar="MAX", help="Show at most MAX messages."),
    ] = None,
) -> None:
    """List unread messages, oldest first, without consuming anything (MAM + XEP-0490
    displayed pointers; XEP-0013 view where the server has no MAM)."""
    limit: int | None = None
    if limit_text is not None:
        text = limit_text.strip()
        if not text.isdigit() or int(text) < 1:
            raise errors.usage(f"-n: {limit_text!r} is not a positive integer")
        limit = int(text)
    if count and (mark or limit is not None):
        raise errors.usage("-c cannot be combined with -m or -n")
    ctx.obj["request"] = UnreadRequest(ctx.obj["opts"], count, mark, limit)


_command = None


#: parameter types Typer's pass-through coercion handles exactly (send's operands
#: arrive as Click's tuple of str, which :func:`send_request` turns into a list)
_PASS_THROUGH: dict[Any, type] = {str: str, bool: bool, list[str]: tuple}


def _skip_pydantic() -> None:
    """Typer >= 0.2x coerces every non-flag value through a Pydantic TypeAdapter,
    importing pydantic (0.2-0.8 s here) on each run, even for plain ``str``
    options and its own ``--help`` flag.  Ours are all ``str``, ``bool`` (``-n``
    is converted by hand) or send's operands (Click's tuple of ``str``), for which
    Typer's own pass-through coercion is exact, so use that for those types.  Best
    effort: if Typer's internals change, nothing is replaced and parsing is merely
    slower."""
    try:
        from typer import core
        from typer._coercion import PassThroughRuntimeParam
    except ImportError:  # pragma: no cover - other Typer versions
        return
    original: Any = getattr(core, "build_runtime_param", None)
    if original is None or getattr(original, "_xmpp_tool", False):  # pragma: no cover
        return

    def build_runtime_param(descriptor: Any) -> Any:
        kind = _PASS_THROUGH.get(getattr(descriptor, "annotation", None))
        if kind is not None:
            return PassThroughRuntimeParam(
                annotation=kind, parameter_info=descriptor.parameter_info
            )
        return original(descriptor)

    build_runtime_param._xmpp_tool = True  # type: ignore[attr-defined]
    core.build_runtime_param = build_runtime_param  # type: ignore[attr-defined]


def _click_command() -> Any:
    global _command
    if _command is None:
        typer_app = app.build()
        _skip_pydantic()
        _command = typer.main.get_command(typer_app)
        if completion.requested():
            completion.enable(_command)
    return _command


def parse(argv: list[str]) -> Request | int:
    """Parse ``argv`` (without the program name).

    Returns the request, or an exit status when Typer already handled everything
    (``--help``, ``--version``).  Raises :class:`ToolError` (64) on usage errors.
    """
    fast = None if completion.requested() else fastargs.parse_send(argv)
    if fast is not None:
        values, recipient, message = fast
        return SendRequest(cli_options(**values), (recipient,), message)  # type: ignore[arg-type]
    return parse_with_typer(argv)


def parse_with_typer(argv: list[str]) -> Request | int:
    """:func:`parse` without the fast path: Typer parses everything."""
    _click_command()
    import typer
    from typer._click import exceptions as click_exc  # Typer ≥ 0.29 vendors Click

    state: dict[str, object] = {}
    try:
        rv = _click_command().main(
            args=list(argv), prog_name=PROG, standalone_mode=False, obj=state
        )
    except click_exc.NoArgsIsHelpError:
        raise errors.usage("missing command (send or unread); see xmpp-tool --help") from None
    except click_exc.ClickException as exc:
        raise errors.usage(f"{exc.format_message()} (see {PROG} --help)") from None
    except typer.Abort:
        raise errors.usage("aborted") from None
    request = state.get("request")
    if isinstance(request, SendRequest | UnreadRequest):
        return request
    if isinstance(rv, int):
        return rv
    return int(Exit.OK)


# ---------------------------------------------------------------------- running


class _NoTracebackFormatter(logging.Formatter):
    """-v output: one line per record, never a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        return errors.one_line(super().format(record))


class _NoStanzaDumps(logging.Filter):
    """slixmpp logs raw stanzas (SEND:/RECV:) at DEBUG — they carry SASL data. Never show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("SEND", "RECV", "NOT SENT"))


def setup_logging(opts: CliOptions, stderr: TextIO) -> None:
    handler = logging.StreamHandler(stderr)
    # -v lines carry the time since start (ms), to see where a run spends it
    fmt = f"{PROG}: %(relativeCreated)6.0fms %(message)s" if opts.verbose else "%(message)s"
    if not opts.verbose:
        fmt = f"{PROG}: {fmt}"
    handler.setFormatter(_NoTracebackFormatter(fmt))
    handler.addFilter(_NoStanzaDumps())
    ours = logging.getLogger("xmpp_tool")
    ours.handlers[:] = [handler]
    ours.propagate = False
    ours.setLevel(logging.INFO if opts.verbose else logging.WARNING if not opts.quiet else
                  logging.ERROR)
    lib = logging.getLogger("slixmpp")
    lib.handlers[:] = [handler] if opts.verbose else [logging.NullHandler()]
    lib.propagate = False
    # slixmpp's INFO lines are safe; its DEBUG lines include raw stanzas (filtered anyway).
    lib.setLevel(logging.INFO if opts.verbose else logging.CRITICAL + 1)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL + 1)


def _execute(request: Request, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Hand the request to its command (each validates, gets the password, opens
    the session and acts); here only what every run needs first."""
    from . import config
    from .session import prepare_slixmpp

    settings = config.resolve(request.opts)
    prepare_slixmpp(need_dns=settings.host is None)
    _resume_gc()
    if isinstance(request, SendRequest):
        from . import send

        send.command(settings, request, stdin, stdout)
    else:
        from . import unread

        unread.command(settings, stdout, as_json=request.opts.json, count_only=request.count,
                       mark=request.mark, limit=request.limit)
    return int(Exit.OK)


def run(
    argv: list[str] | None = None,
    *,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Parse and execute; return the exit status (never raises, never a traceback)."""
    argv = sys.argv[1:] if argv is None else argv
    err = sys.stderr if stderr is None else stderr
    try:
        try:
            request = parse(argv)
            if isinstance(request, int):
                return request
            setup_logging(request.opts, err)
            return _execute(
                request,
                sys.stdin.buffer if stdin is None else stdin,
                sys.stdout.buffer if stdout is None else stdout,
            )
        except ToolError as exc:
            print(f"{PROG}: {exc.message}", file=err)
            return int(exc.code)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted", file=err)
            return int(Exit.INTERRUPTED)
        except BrokenPipeError:
            # the reader went away (``| head``): nothing was marked read; keep
            # Python from complaining when it flushes stdout at exit
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return int(Exit.OK)
        except Exception as exc:  # a bug: still one line, never a traceback
            text = errors.one_line(f"{type(exc).__name__}: {exc}")
            print(f"{PROG}: internal error: {text}", file=err)
            return int(Exit.SOFTWARE)
    finally:
        try:
            err.flush()
        except (OSError, ValueError):
            pass


_gc_paused = False


def _pause_gc() -> None:
    """Start-up (imports of asyncio, ssl, slixmpp) allocates tens of thousands of
    objects and almost no garbage cycles, yet triggers ~35 collections: 2-5 ms of
    a send's CPU.  So the collector is off until the imports are done."""
    global _gc_paused
    if gc.isenabled():
        gc.disable()
        _gc_paused = True


def _resume_gc() -> None:
    """Collector back on before any XMPP work (``unread`` reads whole archives);
    the start-up objects, which live until exit, are left out of its scans."""
    global _gc_paused
    if _gc_paused:
        gc.freeze()
        gc.enable()
        _gc_paused = False


def main() -> None:
    """Console-script entry point."""
    _pause_gc()
    code = run()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
    # Everything is written and flushed, and asyncio.run() has already closed
    # the loop and joined its resolver threads: skip the interpreter's teardown
    # (finalising a few hundred modules costs 15-20 ms of CPU here, more than
    # the XMPP login).  No atexit handler of ours or of slixmpp's has work left.
    os._exit(code)
