"""The common ``send`` command line, parsed without importing Typer -- or nothing.

Importing Typer (with its vendored Click and their imports) and building the
command costs about 20 ms of CPU on the project's machines, a third of a whole
``send``.  :func:`parse_send` accepts only command lines that Typer accepts as a
``send``, and returns what Typer returns for them.  Anything else -- ``unread``,
``--help``, ``--version``, any option of ``send`` itself (``-m``, ``-F``,
``-T``, ...) or an unknown one, a missing operand, ``-v`` with
``-q``, ``--`` among the global options -- gives ``None``, and :func:`xmpp_tool.cli.parse`
hands the command line to Typer.  So Typer still writes every usage error and
every help text; this module never reports anything.

The rules are Click's (the parser Typer uses), for our options only: a short
option taking a value takes the rest of its argument (``-sHOST``, also at the
end of a group, ``-Jshost``) or else the next argument, whatever it looks like;
a long one takes ``--name=VALUE`` or the next argument; the last occurrence of
an option wins; the global options end at the first operand, the command; the
command's options end at its first operand or after ``--``.
``tests/unit/test_posix_syntax.py`` checks this against Typer on random command lines.
"""

from __future__ import annotations

from collections.abc import Sequence

#: global options taking an argument: spelling -> field of CliOptions
VALUE_OPTIONS = {
    "-s": "server", "--server": "server",
    "-u": "user", "--user": "user",
    "-f": "config", "--config": "config",
    "-a": "account", "--account": "account",
    "-C": "cafile", "--cafile": "cafile",
}  # fmt: skip
#: global flags: spelling -> field of CliOptions
FLAGS = {
    "-t": "direct_tls", "--direct-tls": "direct_tls",
    "-J": "json", "--json": "json",
    "-v": "verbose", "--verbose": "verbose",
    "-q": "quiet", "--quiet": "quiet",
}  # fmt: skip

Values = dict[str, str | bool]


def _global_options(args: Sequence[str]) -> tuple[Values, int] | None:
    """Parse the global options; return them and the index of the command."""
    values: Values = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            return None  # legal before the command, but rare: Typer's business
        if arg == "-" or not arg.startswith("-"):
            return values, i - 1
        if arg.startswith("--"):
            name, eq, attached = arg.partition("=")
            if name in FLAGS and not eq:
                values[FLAGS[name]] = True
            elif name in VALUE_OPTIONS:
                if not eq:
                    if i == len(args):
                        return None
                    attached = args[i]
                    i += 1
                values[VALUE_OPTIONS[name]] = attached
            else:
                return None
            continue
        for pos in range(1, len(arg)):  # a group of short options
            short = "-" + arg[pos]
            if short in FLAGS:
                values[FLAGS[short]] = True
            elif short in VALUE_OPTIONS:
                value = arg[pos + 1 :]
                if not value:
                    if i == len(args):
                        return None
                    value = args[i]
                    i += 1
                values[VALUE_OPTIONS[short]] = value
                break
            else:
                return None
    return None  # no command


def parse_send(argv: Sequence[str]) -> tuple[Values, str, str | None] | None:
    """``(global option values, recipient, message or None)`` for a ``send``
    command line that Typer would accept; ``None`` for anything else."""
    parsed = _global_options(argv)
    if parsed is None:
        return None
    values, command = parsed
    if argv[command] != "send" or (values.get("verbose") and values.get("quiet")):
        return None
    operands = list(argv[command + 1 :])
    if operands and operands[0] == "--":
        del operands[0]
    elif operands and operands[0].startswith("-") and operands[0] != "-":
        return None  # -h, --help, an option of send (-m, -F, -g, ...) or an unknown one
    if not 1 <= len(operands) <= 2:
        return None
    return values, operands[0], operands[1] if len(operands) == 2 else None
