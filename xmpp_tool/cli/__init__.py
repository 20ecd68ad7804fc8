"""The command line: parse, then run the request, exit with a documented code.

    xmpp-tool [-s host[:port]] [-u jid] [-f config] [-a account] [-C cafile] [-t] [-J]
              [-v|-q] unread [-c] [-m] [-n max] [-g|-G] [-r room]...
    xmpp-tool [global options] send [-T type] [-S subject] recipient [message|-]
    xmpp-tool [global options] send [-T type] [-S subject] [-g [-N nick]]
              (-m message|- | -F file) recipient...
    xmpp-tool [global options] send -e ...   (OMEMO; -E: in clear despite the config)
    xmpp-tool [global options] trust [-t|-d] [jid [device...]]

A ``send`` without ``-m`` or ``-F`` keeps the one-recipient form: its second
operand is the message.  With ``-m`` or ``-F`` every operand is a recipient, so
no operand is ever both (POSIX operands stay unambiguous).

The layer on top of everything else (nothing below imports it): the fast parser
(:mod:`.fastargs`, the common ``send`` without Typer), the Typer declarations
(:mod:`.typer_app`, for everything else), shell completion (:mod:`.completion`),
and here the run loop: :func:`parse` returns a request, :func:`run` executes it,
so that every failure is one line and a documented code.

Imports inside functions here are for start-up speed: Typer only when it has to
parse, and the actions (with asyncio and ssl) only once there is a request to run.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import BinaryIO, TextIO

from .. import PROG, config, errors, slix
from ..errors import Exit, ToolError
from ..request import Request, SendRequest, TrustRequest
from . import completion, fastargs
from .arguments import cli_options
from .logs import setup_logging

__all__ = ["PROG", "main", "parse", "run"]


def parse(argv: list[str]) -> Request | int:
    """Parse ``argv`` (without the program name).

    Returns the request, or an exit status when Typer already handled everything
    (``--help``, ``--version``).  Raises :class:`ToolError` (64) on usage errors.
    """
    fast = None if completion.requested() else fastargs.parse_send(argv)
    if fast is not None:
        values, recipient, message = fast
        return SendRequest(cli_options(**values), (recipient,), message)  # type: ignore[arg-type]
    from .typer_app import parse_with_typer

    return parse_with_typer(argv)


def _execute(request: Request, stdin: BinaryIO, stdout: BinaryIO) -> int:
    """Hand the request to its command (each validates, gets the password, opens
    the session and acts); here only what every run needs first."""
    settings = config.resolve(request.opts)
    slix.prepare(need_dns=settings.host is None)
    _resume_gc()
    if isinstance(request, SendRequest):
        from .. import send

        send.command(settings, request, stdin, stdout)
    elif isinstance(request, TrustRequest):
        from .. import trust

        trust.command(settings, request, stdout)
    else:
        from .. import unread

        unread.command(settings, request, stdout)
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
