"""What a run writes to standard error besides its one-line error: ``-v`` detail
(never a traceback, never a raw stanza), warnings, or only errors with ``-q``."""

from __future__ import annotations

import logging
from typing import TextIO

from .. import PROG, errors
from ..request import CliOptions


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


OMEMO_LOGGERS = ("omemo", "slixmpp_omemo", "oldmemo", "twomemo", "doubleratchet", "x3dh",
                 "xeddsa")


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
    # The OMEMO library's loggers (python-omemo logs plaintexts at DEBUG, its
    # warnings are about the protocol, not the run): never shown; xmpp_tool.omemo
    # says what matters.
    for name in OMEMO_LOGGERS:
        quiet_lib = logging.getLogger(name)
        quiet_lib.handlers[:] = [logging.NullHandler()]
        quiet_lib.propagate = False
        quiet_lib.setLevel(logging.CRITICAL + 1)
