"""setuptools hook: the man page xmpp-tool(1) is generated from the command's own
help when the package is built (``python -m xmpp_tool.cli.manpage``), and installed
as share/man/man1/xmpp-tool.1.  Everything else is in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
MAN_PAGE = "build/man/xmpp-tool.1"


class BuildWithManPage(build_py):
    def run(self) -> None:
        super().run()
        out = HERE / MAN_PAGE
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "xmpp_tool.cli.manpage", str(out)], check=True,
                       cwd=HERE)  # fmt: skip


setup(cmdclass={"build_py": BuildWithManPage},
      data_files=[("share/man/man1", [MAN_PAGE])])  # fmt: skip
