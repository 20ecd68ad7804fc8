"""POSIX Utility Syntax Guidelines (XBD 12.2), one test per guideline that applies.

Guideline 2 (names of lowercase letters and digits only) is about the utility's
name, which the project fixed as ``xmpp-tool``; the hyphen is the one deviation.
Guideline 8 (several option-arguments in one argument) does not apply: no option
takes a list.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from xmpp_tool import cli, errors
from xmpp_tool.cli import fastargs, parse
from xmpp_tool.cli.typer_app import click_command, parse_with_typer
from xmpp_tool.errors import Exit
from xmpp_tool.request import CliOptions, SendRequest, UnreadRequest


def send_req(argv: list[str]) -> SendRequest:
    req = parse(argv)
    assert isinstance(req, SendRequest), req
    return req


def unread_req(argv: list[str]) -> UnreadRequest:
    req = parse(argv)
    assert isinstance(req, UnreadRequest), req
    return req


def usage_code(run_cli: Any, argv: list[str]) -> tuple[int, str]:
    res = run_cli(argv)
    return res.code, res.stderr


def all_options() -> list[tuple[str, list[str]]]:
    """(command name, option spellings) for the group and both commands."""
    group = click_command()
    found = []
    for cmd in [group, *group.commands.values()]:
        for param in cmd.get_params(group.make_context("xmpp-tool", ["unread"])):
            if param.param_type_name == "option":
                found.append((cmd.name, list(param.opts)))
    return found


def test_guideline_1_name_length() -> None:
    # "Utility names should be between two and nine characters, inclusive."
    assert 2 <= len(cli.PROG) <= 9
    assert cli.PROG == cli.PROG.lower()


def test_guideline_3_single_alphanumeric_option_names() -> None:
    # Every option has a single-character alphanumeric spelling (long ones are
    # extras), none is the reserved -W.  --version is the one long-only extra.
    for cmd, opts in all_options():
        short = [o for o in opts if len(o) == 2 and o[0] == "-"]
        if opts == ["--version"]:
            continue
        assert short, f"{cmd}: {opts} has no single-letter spelling"
        assert all(o[1].isalnum() and o != "-W" for o in short)


def test_guideline_4_options_start_with_hyphen(run_cli: Any) -> None:
    # "+J" is not an option: it is taken as an operand (here: an unknown command).
    code, err = usage_code(run_cli, ["+J", "unread"])
    assert code == Exit.USAGE
    assert "+J" in err


def test_guideline_5_grouping() -> None:
    grouped = unread_req(["-Jvt", "unread", "-c"])
    separate = unread_req(["-J", "-v", "-t", "unread", "-c"])
    assert grouped == separate
    assert grouped.opts.json and grouped.opts.verbose and grouped.opts.direct_tls
    # an option taking an argument may end a group: -Js<arg>
    req = unread_req(["-Jsexample.org:5222", "unread", "-mn3"])
    assert req.opts.json and req.opts.server == "example.org:5222"
    assert req.mark and req.limit == 3


def test_guideline_6_option_argument_separate_or_attached() -> None:
    apart = send_req(["-s", "example.org", "-u", "a@example.org", "send", "b@example.org", "x"])
    attached = send_req(["-sexample.org", "-ua@example.org", "send", "b@example.org", "x"])
    assert apart == attached
    assert apart.opts.server == "example.org"
    assert apart.opts.user == "a@example.org"


def test_guideline_7_option_arguments_are_not_optional(run_cli: Any) -> None:
    code, err = usage_code(run_cli, ["unread", "-n"])
    assert code == Exit.USAGE and "-n" in err
    code, err = usage_code(run_cli, ["-s"])
    assert code == Exit.USAGE and "-s" in err
    # the next argument is the option-argument even if it looks like a command
    code, err = usage_code(run_cli, ["-s", "unread"])
    assert code == Exit.USAGE and "Missing command" in err


def test_guideline_9_options_before_operands(run_cli: Any) -> None:
    # After the first operand of `send`, "-v" is the message, not an option.
    req = send_req(["send", "bob@example.org", "-v"])
    assert req.message == "-v"
    assert req.opts.verbose is False
    # Global options are not accepted after the command name...
    code, err = usage_code(run_cli, ["unread", "-J"])
    assert code == Exit.USAGE and "-J" in err
    # ...and nothing follows unread's options.
    code, err = usage_code(run_cli, ["unread", "-c", "extra"])
    assert code == Exit.USAGE and "extra" in err
    # parsing of the global part stops at the first operand (the command)
    code, _ = usage_code(run_cli, ["send", "-s", "x", "bob@example.org", "hi"])
    assert code == Exit.USAGE


def test_guideline_10_double_hyphen_ends_options() -> None:
    req = send_req(["send", "--", "-bob@example.org", "-J"])
    assert req.recipient == "-bob@example.org"
    assert req.message == "-J"
    assert req.opts.json is False
    req2 = unread_req(["-J", "--", "unread"])
    assert req2.opts.json


def test_guideline_11_option_order_does_not_matter(run_cli: Any) -> None:
    a = unread_req(["-J", "-t", "-s", "h:1", "-u", "a@b.c", "unread", "-m", "-n", "2"])
    b = unread_req(["-u", "a@b.c", "-s", "h:1", "-t", "-J", "unread", "-n", "2", "-m"])
    assert a == b
    # mutually exclusive options are refused in either order
    assert usage_code(run_cli, ["-v", "-q", "unread"])[0] == Exit.USAGE
    assert usage_code(run_cli, ["-q", "-v", "unread"])[0] == Exit.USAGE
    assert usage_code(run_cli, ["-qv", "unread"])[0] == Exit.USAGE


def test_guideline_12_operand_order_matters() -> None:
    a = send_req(["send", "bob@example.org", "hello"])
    b = send_req(["send", "hello", "bob@example.org"])
    assert (a.recipient, a.message) == ("bob@example.org", "hello")
    assert (b.recipient, b.message) == ("hello", "bob@example.org")


@pytest.mark.parametrize("operand", [None, "-"])
def test_guideline_13_hyphen_means_stdin(
    run_cli: Any, captured_send: Any, monkeypatch: pytest.MonkeyPatch,
    operand: str | None,
) -> None:
    monkeypatch.setenv("XMPP_TOOL_PASSWORD", "secret")
    argv = ["-s", "127.0.0.1:1", "-u", "alice@example.org", "send", "bob@example.org"]
    if operand is not None:
        argv.append(operand)
    res = run_cli(argv, stdin="from stdin ✓\n".encode())
    assert res.code == Exit.OK, res.stderr
    assert captured_send.calls[0]["body"] == "from stdin ✓"
    assert captured_send.calls[0]["recipient"] == "bob@example.org"


def test_guideline_14_option_group_recognised_as_options() -> None:
    # "-Jq" is a group of two flags, not an operand; "-n5" is -n with "5".
    req = unread_req(["-Jq", "unread", "-n5"])
    assert req.opts == CliOptions(json=True, quiet=True)
    assert req.limit == 5


# ------------------------------------------------- the Typer-free parse of send
#
# cli.parse() takes the common `send` command lines without importing Typer
# (xmpp_tool.fastargs) and gives everything else to Typer.  The two must never
# disagree: same request, same error, same exit code.

TOKENS = [
    "-s", "--server", "-u", "--user", "-f", "--config", "-a", "--account", "-C", "--cafile",
    "-t", "--direct-tls", "-J", "--json", "-v", "--verbose", "-q", "--quiet",
    "-Jv", "-tJ", "-vq", "-Jsexample.org:5222", "-sexample.org", "-ua@example.org", "-s=x",
    "-J=x", "--server=h:1", "--user=", "--json=1", "--verbose=", "---json", "--serv",
    "-h", "--help", "-Jh", "--version", "-x", "--bogus", "+J", "-", "--", "",
    "send", "unread", "Send", "bob@example.org", "hi", "-bob@example.org", "a b", "ä@ö.example",
    "-m", "-mhi", "-F", "-T", "headline", "-S", "-g", "-N", "-gm", "--message=x", "--type",
]  # fmt: skip
tokens = st.one_of(st.sampled_from(TOKENS), st.text(max_size=6))
values = st.one_of(st.sampled_from(["x", "", "=x", " x ", "-J", "--", "-", "send", "a@b"]),
                   st.text(max_size=5))  # fmt: skip
SHORT_FLAGS = [o for o in fastargs.FLAGS if len(o) == 2]
SHORT_VALUED = [o for o in fastargs.VALUE_OPTIONS if len(o) == 2]


@st.composite
def global_option(draw: st.DrawFn, odd: bool = True) -> list[str]:
    """One global option in one of its spellings, or (if ``odd``) any token."""
    kind = draw(st.integers(0 if odd else 1, 9))
    if kind == 0:
        return [draw(tokens)]
    if kind in (1, 2):
        return [draw(st.sampled_from(sorted(fastargs.FLAGS)))]
    if kind == 3 and odd:  # a flag with a value
        return [draw(st.sampled_from(sorted(fastargs.FLAGS))) + "=" + draw(values)]
    if kind in (3, 4):  # a group of flags, perhaps ending with an option and its value
        group = "-" + "".join(f[1] for f in draw(st.lists(st.sampled_from(SHORT_FLAGS),
                                                            min_size=1, max_size=3)))
        if draw(st.booleans()):
            return [group]
        group += draw(st.sampled_from(SHORT_VALUED))[1]
        value = draw(values)
        return [group + value] if value and draw(st.booleans()) else [group, value]
    name = draw(st.sampled_from(sorted(fastargs.VALUE_OPTIONS)))
    value = draw(values)
    if kind == 5 and name.startswith("--"):
        return [f"{name}={value}"]
    if kind == 6 and len(name) == 2 and value:
        return [name + value]
    return [name, value]


@st.composite
def send_lines(draw: st.DrawFn) -> list[str]:
    """`[global options] send [--] recipient [message]`, the options in any spelling."""
    before = [t for part in draw(st.lists(global_option(odd=False), max_size=5)) for t in part]
    plain = st.one_of(st.sampled_from(["bob@example.org", "hi", "-", "x y", "-v"]), values)
    operands = draw(st.lists(plain, min_size=1, max_size=2))
    if draw(st.booleans()):
        operands.insert(0, "--")
    return [*before, "send", *operands]


@st.composite
def send_like(draw: st.DrawFn) -> list[str]:
    """Mostly `[global options] send [--] [operands]` with odd tokens here and
    there, sometimes anything at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.lists(tokens, max_size=8))
    before = [t for part in draw(st.lists(global_option(), max_size=4)) for t in part]
    if draw(st.integers(0, 9)) == 0:
        odd = draw(st.sampled_from(["--", "-", "send", "unread"]))
        before.insert(draw(st.integers(0, len(before))), odd)
    command = draw(st.sampled_from(["send"] * 9 + ["unread", "Send", "-", ""]))
    operand = st.one_of(st.sampled_from(["bob@example.org", "hi", "-", "x y"]), values, tokens)
    operands = draw(st.lists(operand, max_size=3))
    if draw(st.integers(0, 3)) == 0:
        operands.insert(0, "--")
    return [*before, command, *operands]


def outcome(parse_fn: Any, argv: list[str]) -> object:
    try:
        return parse_fn(argv)
    except errors.ToolError as exc:
        return ("error", exc.code, exc.message)


def check_agreement(argv: list[str]) -> bool:
    """Same outcome with and without the fast path; True if it was taken."""
    fast = fastargs.parse_send(argv)
    assert outcome(cli.parse, argv) == outcome(parse_with_typer, argv), argv
    if fast is not None:
        assert isinstance(parse_with_typer(argv), SendRequest), argv
    return fast is not None


@settings(max_examples=500, deadline=None)
@given(argv=send_lines())
def test_fast_send_parse_agrees_with_typer(argv: list[str]) -> None:
    event("fast path" if check_agreement(argv) else "Typer")


@settings(max_examples=500, deadline=None)
@given(argv=send_like())
def test_fast_send_parse_agrees_with_typer_on_odd_lines(argv: list[str]) -> None:
    event("fast path" if check_agreement(argv) else "Typer")


@pytest.mark.parametrize("argv", [
    ["-s=x", "send", "b"], ["-Js=x", "send", "b"], ["-sJ", "send", "b"], ["-Jsv", "send", "b"],
    ["-", "send", "b"], ["--json=1", "send", "b"], ["--server=", "send", "b"],
    ["--server=a=b", "send", "b"], ["-s", "-J", "send", "b"], ["-s", "send", "send", "b"],
    ["-s", " x ", "send", "b"], ["--server", " x ", "send", "b"], ["-u", "", "send", "b"],
    ["--", "-J", "send", "b"], ["--", "send", "b"], ["-J", "--", "send", "b"],
    ["send", "--", "--", "x"], ["send", "b", "--"], ["send", "-", "x"], ["send", "", ""],
    ["send", "b", "-h"], ["-vq", "send", "b"], ["-v", "-q", "send", "b"], ["-Jh", "send", "b"],
    ["send", "-h"], ["send", "--help"], ["send"], ["send", "--"], ["send", "a", "b", "c"],
    ["-u", "a@b", "send", "-x", "b"], ["-s"], ["--server"], ["-Js"], ["send", "-", "-"],
    ["--version", "send", "b"], ["-t", "-t", "send", "b"], ["-s", "a", "-s", "b", "send", "c"],
])  # fmt: skip
def test_fast_send_parse_agrees_with_typer_on_edge_cases(argv: list[str]) -> None:
    check_agreement(argv)


@pytest.mark.parametrize("argv", [
    ["send", "bob@example.org", "hi"],
    ["send", "bob@example.org"],
    ["send", "bob@example.org", "-"],
    ["send", "--", "-bob@example.org", "-J"],
    ["-C", "ca.crt", "-s", "127.0.0.1:5222", "-u", "a@example.org", "send", "b@example.org", "x"],
    ["-t", "-Jv", "-sexample.org", "--user=a@example.org", "send", "b@example.org", "x"],
    ["-f", "cfg.toml", "-a", "work", "-q", "send", "b@example.org", "-v"],
])  # fmt: skip
def test_common_send_lines_skip_typer(argv: list[str]) -> None:
    assert fastargs.parse_send(argv) is not None
    assert cli.parse(argv) == parse_with_typer(argv)


def test_fast_parse_knows_exactly_typers_global_options() -> None:
    group = click_command()
    ctx = group.make_context("xmpp-tool", ["unread"])
    flags: set[str] = set()
    valued: set[str] = set()
    for param in group.get_params(ctx):
        if param.param_type_name != "option" or param.name in ("version", "help"):
            continue
        assert not param.secondary_opts and not param.multiple and param.nargs == 1
        (flags if param.is_flag else valued).update(param.opts)
    assert flags == set(fastargs.FLAGS)
    assert valued == set(fastargs.VALUE_OPTIONS)
    send_params = group.commands["send"].get_params(ctx)
    # send's own options all send the line to Typer (fastargs gives up on any "-x")
    assert [p.name for p in send_params if p.param_type_name == "option"] == [
        "message", "file", "mtype", "subject", "groupchat", "nick", "encrypt", "plain", "help"]
    assert [(p.name, p.required, p.nargs) for p in send_params
            if p.param_type_name == "argument"] == [("operands", False, -1)]
