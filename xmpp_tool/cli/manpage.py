"""``xmpp-tool(1)``, written from the command's own help (run at build time).

``python -m xmpp_tool.cli.manpage [FILE]`` prints the page (or writes FILE).  Every text
comes from the Typer/Click command (usage, the help of each option and operand,
the epilog with the exit status and the password sources), so the page and
``--help`` cannot disagree.
"""

from __future__ import annotations

import sys
from typing import Any

from .. import PROG, __version__
from .typer_app import click_command


def _roff(text: str) -> str:
    """Escape for roff: backslashes, and a leading dot or quote on a line."""
    out = []
    for line in text.replace("\\", "\\e").replace("-", "\\-").splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        out.append(line)
    return "\n".join(out)


def _paragraphs(text: str) -> str:
    """Click's help: paragraphs separated by blank lines; ``\\b`` keeps a block as is."""
    parts = []
    for block in text.strip().split("\n\n"):
        if block.startswith("\b\n"):
            parts.append(".nf\n" + _roff(block[2:]) + "\n.fi")
        else:
            parts.append(_roff(" ".join(block.split())))
    return "\n.PP\n".join(parts)


def _options(cmd: Any, ctx: Any) -> str:
    lines = []
    for param in cmd.get_params(ctx):
        if param.param_type_name == "argument":  # Click gives operands no help record
            names = param.metavar or param.human_readable_name
            help_text = getattr(param, "help", None) or ""
        else:
            record = param.get_help_record(ctx)
            if record is None:
                continue
            names, help_text = record
        lines += [".TP", f"\\fB{_roff(names)}\\fR", _roff(" ".join(help_text.split()))]
    return "\n".join(lines)


def render() -> str:
    group = click_command()
    ctx = group.make_context(PROG, ["unread"], resilient_parsing=True)
    out = [
        f'.TH {_roff(PROG.upper())} 1 "" "{PROG} {__version__}" "User Commands"',
        ".SH NAME",
        f"{_roff(PROG)} \\- {_roff(group.help.splitlines()[0].strip() if group.help else '')}",
        ".SH SYNOPSIS",
    ]
    for name, cmd in group.commands.items():
        sub = cmd.make_context(name, [], parent=ctx, resilient_parsing=True)
        pieces = " ".join(cmd.collect_usage_pieces(sub))
        out += [".PP", f"\\fB{_roff(PROG)}\\fR [\\fIglobal options\\fR] \\fB{name}\\fR "
                f"{_roff(pieces)}"]  # fmt: skip
    out += [".SH GLOBAL OPTIONS", _options(group, ctx)]
    for name, cmd in group.commands.items():
        sub = cmd.make_context(name, [], parent=ctx, resilient_parsing=True)
        out += [f".SH COMMAND: {name.upper()}", _paragraphs(cmd.help or ""),
                ".SS Options and operands", _options(cmd, sub)]  # fmt: skip
    if group.epilog:
        out += [".SH NOTES", _paragraphs(group.epilog)]
    out += [".SH SEE ALSO", "docs/cli.md in the source distribution."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    page = render()
    if argv:
        with open(argv[0], "w", encoding="utf-8") as fh:
            fh.write(page)
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
