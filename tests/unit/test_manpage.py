"""The man page is generated from the command's own help: every option is in it."""

from __future__ import annotations

import shutil
import subprocess

from xmpp_tool.cli import manpage
from xmpp_tool.cli.typer_app import click_command
from xmpp_tool.errors import EXIT_CODES


def test_every_option_and_exit_code_is_on_the_page() -> None:
    page = manpage.render()
    plain = page.replace("\\-", "-")
    group = click_command()
    ctx = group.make_context("xmpp-tool", ["unread"])
    for cmd in [group, *group.commands.values()]:
        for param in cmd.get_params(ctx):
            for spelling in param.opts:
                if param.param_type_name == "option":
                    assert spelling in plain, spelling
    for code in EXIT_CODES:
        assert f"  {code:<3} " in plain
    assert "XMPP_TOOL_ROOM_PASSWORD" in plain
    assert "RECIPIENT [MESSAGE|-]" in plain


def test_page_renders_without_warnings() -> None:
    groff = shutil.which("groff")
    assert groff, "groff (Debian package groff-base) renders man pages"
    res = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z"], input=manpage.render(),
                         capture_output=True, text=True, check=False, timeout=60)  # fmt: skip
    assert res.returncode == 0 and res.stderr == "", res.stderr
