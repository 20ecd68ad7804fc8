"""POSIX Utility Syntax Guidelines (XBD 12.2), one test per guideline that applies.

Guideline 2 (names of lowercase letters and digits only) is about the utility's
name, which the project fixed as ``xmpp-tool``; the hyphen is the one deviation.
Guideline 8 (several option-arguments in one argument) does not apply: no option
takes a list.
"""

from __future__ import annotations

from typing import Any

import pytest

from xmpp_tool import cli
from xmpp_tool.cli import SendRequest, UnreadRequest, parse
from xmpp_tool.config import CliOptions
from xmpp_tool.errors import Exit


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
    group = cli._click_command()
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
