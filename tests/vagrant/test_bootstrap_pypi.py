"""lab/bootstrap-salt.sh's PyPI branch: what a VirtualBox user's VM runs (no
wheelhouse, no Salt in the box). It needs PyPI, which the nspawn machines have no
route to, so it runs with the hash-gated vagrant tests, in a fresh Debian 13
chroot on the host: the script installs python3-venv, gcc and the Python headers
from Debian, then the pinned Salt and its extensions from PyPI."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from lab import manifest

pytestmark = [pytest.mark.vagrant, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]


def test_bootstrap_installs_the_pins_from_pypi(tmp_path: Path) -> None:
    if shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap missing: bash tests/setup.sh")
    src = tmp_path / "src"
    (src / "lab").mkdir(parents=True)
    (src / "pillar/lab").mkdir(parents=True)
    for rel in ("lab/bootstrap-salt.sh", "lab/manifest.py", "lab/minion",
                "pillar/lab/manifest.json"):
        shutil.copy(ROOT / rel, src / rel)
    cas = sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))
    trust = "true"
    if cas:  # networks that re-sign HTTPS (the bootstrap's host-ca/ does this in a VM)
        trust = (f"cp {' '.join(shlex.quote(str(c)) for c in cas)} "
                 '"$1/usr/local/share/ca-certificates/" && chroot "$1" update-ca-certificates')
    inside = "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root XMPP_LAB_SRC=/srv/xmpp-tool"
    res = subprocess.run(
        ["mmdebstrap", "--mode=root", "--variant=minbase", "--quiet",
         "--include=python3,ca-certificates",
         f"--customize-hook={trust}",
         f"--customize-hook=mkdir -p \"$1/srv\" && cp -r {src} \"$1/srv/xmpp-tool\"",
         f"--customize-hook=chroot \"$1\" {inside} sh /srv/xmpp-tool/lab/bootstrap-salt.sh",
         "--customize-hook=chroot \"$1\" /opt/salt/bin/python -c "
         "'import saltext.mysql, pymysql, salt.version; print(\"salt\", salt.version.__version__)'",
         "trixie", "/dev/null", "deb http://deb.debian.org/debian trixie main"],
        capture_output=True, text=True, timeout=1500, check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    version = manifest.salt_pins()[0].split("==")[1]
    assert "installing" in out and "from PyPI" in out, out[-3000:]
    assert f"salt-call {version}" in out
    assert f"salt {version}" in out
