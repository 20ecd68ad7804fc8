"""The vagrant proof record (lab/proof.py) and the branch of .ci/run that reads it.

What `vagrant up` applies lands only with a record of a passing whole-lab run of
exactly that content; these checks are cheap (no VM, no root)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lab import proof

pytestmark = pytest.mark.git  # lab.proof lists the files it hashes with git

ROOT = Path(__file__).resolve().parents[1]
VAGRANT_RUN = "pytest -m vagrant tests/vagrant"


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A small checkout with inputs and non-inputs (a git repository: the tests
    that use it are marked ``git``)."""
    files = {
        "Vagrantfile": "Vagrant.configure('2') {}\n",
        "lab/bootstrap-salt.sh": "#!/bin/sh\n",
        "lab/box/build.sh": "#!/bin/sh\n",
        "salt/top.sls": "base: {}\n",
        "pillar/lab/manifest.json": '{"lab": {"salt": {"version": "3008.4"}}}\n',
        "tests/infra/test_x.py": "def test_x(): pass\n",
        "tests/vagrant/test_up.py": "def test_up(): pass\n",
        "tests/vagrant/proof.json": "{}\n",
        "xmpp_tool/cli.py": "print('cli')\n",
        "README.md": "# readme\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / ".gitignore").write_text("lab/state/\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    return tmp_path


@pytest.mark.parametrize("rel", [
    "Vagrantfile", "lab/bootstrap-salt.sh", "lab/box/build.sh", "salt/top.sls",
    "pillar/lab/manifest.json", "tests/infra/test_x.py", "tests/vagrant/test_up.py",
])
def test_changing_an_input_changes_the_hash(repo: Path, rel: str) -> None:
    before = proof.content_hash(repo)
    with (repo / rel).open("a") as f:
        f.write("# changed\n")
    assert proof.content_hash(repo) != before


@pytest.mark.parametrize("rel", ["xmpp_tool/cli.py", "README.md", "tests/vagrant/proof.json",
                                 "lab/state/secrets.sls"])
def test_changing_anything_else_keeps_it(repo: Path, rel: str) -> None:
    before = proof.content_hash(repo)
    (repo / rel).parent.mkdir(parents=True, exist_ok=True)
    with (repo / rel).open("a") as f:
        f.write("# changed\n")
    assert proof.content_hash(repo) == before


def test_a_new_input_file_or_exec_bit_changes_it(repo: Path) -> None:
    before = proof.content_hash(repo)
    (repo / "salt/new.sls").write_text("x: y\n")  # not yet added: a clone would have it
    after_new = proof.content_hash(repo)
    assert after_new != before
    (repo / "lab/box/build.sh").chmod(0o755)
    assert proof.content_hash(repo) != after_new


def test_every_named_input_exists_in_the_checkout() -> None:
    covered = proof.files()
    for entry in proof.INPUTS:
        assert any(f == entry or f.startswith(entry) for f in covered), entry
    assert proof.RECORD.as_posix() not in covered


def test_check_says_why(repo: Path, tmp_path: Path) -> None:
    record = tmp_path / "rec.json"
    ok, line = proof.check(record, repo)
    assert not ok and "no record" in line
    record.write_text(json.dumps({"content_sha256": "0" * 64, "proven": "2026-01-01"}))
    ok, line = proof.check(record, repo)
    assert not ok and "differs" in line
    record.write_text(json.dumps({"content_sha256": proof.content_hash(repo),
                                  "proven": "2026-11-28T12:00:00Z", "tests": {"passed": 10}}))
    ok, line = proof.check(record, repo)
    assert ok and line.startswith("vagrant path proven:") and "2026-11-28T12:00:00Z" in line
    record.write_text("not json")
    with pytest.raises(proof.ProofError):
        proof.check(record, repo)


def ci_dry_run(record: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XMPP_LAB_PROOF": str(record)}
    return subprocess.run(["bash", str(ROOT / ".ci/run"), "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def test_ci_skips_the_vagrant_run_when_the_record_matches(tmp_path: Path) -> None:
    record = tmp_path / "proof.json"
    record.write_text(json.dumps({"content_sha256": proof.content_hash(),
                                  "proven": "2026-11-28T12:00:00Z", "tests": {"passed": 10}}))
    res = ci_dry_run(record)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "+ bash tests/setup.sh" in lines
    assert any(line.startswith("vagrant path proven: ") for line in lines)
    assert VAGRANT_RUN not in res.stdout


def test_ci_runs_the_vagrant_test_when_it_does_not(tmp_path: Path) -> None:
    record = tmp_path / "proof.json"
    record.write_text(json.dumps({"content_sha256": "f" * 64, "proven": "2020-01-01"}))
    res = ci_dry_run(record)
    assert res.returncode == 0, res.stderr
    assert "vagrant path not proven" in res.stdout
    assert res.stdout.rstrip().splitlines()[-1].endswith(VAGRANT_RUN)
