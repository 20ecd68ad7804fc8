"""What ``pip install .`` puts into a user's site-packages: ``xmpp_tool`` only.

The lab's tooling (``lab``) and the benchmarks (``bench``) are for this checkout:
importable here (``python -m lab.harness``, ``python -m bench.send_latency``,
pytest's ``pythonpath``), never shipped as generic top-level packages.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: not part of a fresh clone (.gitignore), or large and irrelevant to the build
NOT_CLONED = (".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__",
              ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", ".vagrant",
              ".kitchen", "state")  # fmt: skip


def test_the_wheel_holds_xmpp_tool_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_CLONED), symlinks=True)
    out = tmp_path / "wheel"
    # the build runs in this venv (setuptools, typer for the man page): no index needed
    res = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/RECORD"))
        top_level = zf.read(f"{dist_info}/top_level.txt").decode().split()
    tops = {n.split("/")[0] for n in names}
    packages = {t for t in tops if not t.endswith((".dist-info", ".data"))}
    assert packages == {"xmpp_tool"}, sorted(tops)
    assert top_level == ["xmpp_tool"]
    assert "xmpp_tool/cli/__init__.py" in names  # subpackages are in
    assert any(n.endswith(".data/data/share/man/man1/xmpp-tool.1") for n in names)


def test_lab_and_bench_run_from_the_checkout_without_being_installed() -> None:
    # -I: no PYTHONPATH, no user site, not even the current directory: only what
    # is installed in this venv (an editable install included) could be found
    code = "import importlib.util as u; print(u.find_spec('lab'), u.find_spec('bench'))"
    res = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, check=False)  # fmt: skip
    assert res.stdout.split() == ["None", "None"], res.stdout + res.stderr
    # in the checkout, as documented: python -m from its top directory
    for module in ("lab.proof", "bench.send_features"):
        res = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                             text=True, cwd=ROOT, timeout=60, check=False)  # fmt: skip
        assert "Traceback" not in res.stderr, (module, res.stderr)
        assert "usage:" in (res.stdout + res.stderr).lower(), (module, res.stdout, res.stderr)
