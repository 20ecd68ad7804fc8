"""The lab's secret generator (lab/secrets.py): the pillar, the lab CA and the
client config it writes, their modes, idempotence, rotation, network overrides.
Python's standard library and openssl only: no Salt."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SECRETS = Path(__file__).resolve().parents[1] / "lab" / "secrets.py"


def run_secrets(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SECRETS), "--state-dir", str(state_dir), *args],
        capture_output=True, text=True, check=False, timeout=60,
    )


def read_json_sls(path: Path) -> dict[str, Any]:
    lines = [ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("#")]
    data: dict[str, Any] = json.loads("\n".join(lines))
    return data


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"


def test_secrets_generator_writes_pillar_ca_and_client_config(state_dir: Path) -> None:
    assert run_secrets(state_dir).returncode == 0
    mode = {n: stat.S_IMODE((state_dir / n).stat().st_mode)
            for n in ("secrets.sls", "ca.crt", "client.toml")}
    assert mode == {"secrets.sls": 0o600, "ca.crt": 0o644, "client.toml": 0o600}
    data = read_json_sls(state_dir / "secrets.sls")
    assert len(data["ejabberd"]["cookie"]) == 32
    assert data["mariadb"]["users"]["prosody"]["password"] == data["prosody"]["sql"]["password"]
    assert data["labtls"]["ca"]["cert"] == (state_dir / "ca.crt").read_text()
    verify = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "basicConstraints", "-in", str(state_dir / "ca.crt")],
        capture_output=True, text=True, check=True,
    )
    assert "CA:TRUE" in verify.stdout
    with (state_dir / "client.toml").open("rb") as fh:
        client = tomllib.load(fh)
    assert client["default"] == "alice@prosody"
    accounts = client["accounts"]
    assert set(accounts) == {"alice@prosody", "bob@prosody", "alice@ejabberd", "bob@ejabberd"}
    assert accounts["alice@prosody"]["server"] == "192.168.56.10:5222"
    assert accounts["bob@ejabberd"]["server"] == "192.168.56.13:5222"  # through lb
    assert accounts["bob@ejabberd"]["jid"] == "bob@ejabberd.test"
    assert accounts["alice@prosody"]["password"] == data["prosody"]["users"]["alice"]["password"]
    assert Path(accounts["alice@prosody"]["cafile"]).is_absolute()
    assert Path(accounts["alice@prosody"]["cafile"]) == (state_dir / "ca.crt").resolve()


def test_secrets_generator_keeps_values_and_rotates_on_request(state_dir: Path) -> None:
    assert run_secrets(state_dir).returncode == 0
    first = {n: (state_dir / n).read_text() for n in ("secrets.sls", "ca.crt", "client.toml")}
    assert run_secrets(state_dir).returncode == 0
    assert first == {n: (state_dir / n).read_text() for n in first}
    assert run_secrets(state_dir, "--rotate").returncode == 0
    old, new = (json.loads("\n".join(ln for ln in t.splitlines() if not ln.startswith("#")))
                for t in (first["secrets.sls"], (state_dir / "secrets.sls").read_text()))
    assert old["ejabberd"]["cookie"] != new["ejabberd"]["cookie"]
    assert old["labtls"]["ca"]["key"] != new["labtls"]["ca"]["key"]
    assert old["prosody"]["users"]["bob"] != new["prosody"]["users"]["bob"]
    assert run_secrets(state_dir, "--rotate", "--keep-cookie").returncode == 0
    kept = read_json_sls(state_dir / "secrets.sls")
    assert kept["ejabberd"]["cookie"] == new["ejabberd"]["cookie"]
    assert kept["ejabberd"]["users"] != new["ejabberd"]["users"]


def test_secrets_generator_follows_network_overrides(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "overrides.sls").write_text(json.dumps(
        {"lab": {"machines": {"prosody": {"address": "10.99.0.10"},
                              "lb": {"address": "10.99.0.13"}}}}))
    assert run_secrets(state_dir).returncode == 0
    with (state_dir / "client.toml").open("rb") as fh:
        accounts = tomllib.load(fh)["accounts"]
    assert accounts["alice@prosody"]["server"] == "10.99.0.10:5222"
    assert accounts["alice@ejabberd"]["server"] == "10.99.0.13:5222"


def test_secrets_generator_rejects_bad_overrides_with_one_line(state_dir: Path) -> None:
    state_dir.mkdir()
    (state_dir / "overrides.sls").write_text("lab: [not json\n")
    proc = run_secrets(state_dir)
    assert proc.returncode == 65
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "overrides.sls" in proc.stderr
    assert run_secrets(state_dir, "--bogus").returncode == 64
