"""The lab manifest (pillar/lab/manifest.json) is the one list of the lab's machines.

A machine added to a copy of the manifest -- and nothing else changed -- must reach
every consumer: the Vagrantfile defines it (`vagrant status`), the nspawn harness boots
and orders it, kitchen.yml has a suite for it, the pillar top gives it its role and
Salt (mock apply) joins it to the cluster and puts it behind haproxy, and the client
config still goes through the balancer. Cheap: no machine boots, no root needed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lab import harness, manifest, saltlocal
from tests.vagrant.test_structure import defined_machines

ROOT = Path(__file__).resolve().parents[1]
NEW, LIKE, ADDRESS = "ejabberd3", "ejabberd2", "192.168.56.14"
GRAINS = {"os": "Debian", "os_family": "Debian", "osfinger": "Debian-13",
          "osrelease": "13", "osmajorrelease": 13, "oscodename": "trixie"}


def test_default_lab_is_five_machines_with_a_three_node_cluster() -> None:
    lab = manifest.load()
    assert manifest.names(lab) == ["prosody", "ejabberd1", "ejabberd2", "ejabberd3", "lb"]
    # An odd number of members: one may fail and a majority goes on (docs/cluster.md).
    assert lab["cluster"] == {"ejabberd": ["ejabberd1", "ejabberd2", "ejabberd3"]}
    # No order: a joining node waits for its seed in Salt (salt/ejabberd/cluster), and
    # haproxy needs no backend up to start; so every machine provisions at once.
    assert manifest.waves(lab) == [["prosody", "ejabberd1", "ejabberd2", "ejabberd3", "lb"]]
    assert manifest.entry(lab, "ejabberd") == "lb"


def test_after_orders_waves_by_machine_or_role() -> None:
    lab = manifest.load()
    lab["machines"]["ejabberd2"]["after"] = ["ejabberd1"]
    lab["machines"]["lb"]["after"] = ["ejabberd"]
    assert manifest.after(lab, "lb") == ["ejabberd1", "ejabberd2", "ejabberd3"]
    assert manifest.waves(lab) == [["prosody", "ejabberd1", "ejabberd3"], ["ejabberd2"], ["lb"]]
    assert manifest.waves(lab, ["prosody", "ejabberd2", "lb"]) == [["prosody", "ejabberd2"],
                                                                   ["lb"]]
    lab["machines"]["ejabberd1"]["after"] = ["lb"]
    with pytest.raises(manifest.ManifestError, match="cycle"):
        manifest.waves(lab)


@pytest.fixture(scope="module")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's lab files whose manifest has one machine more."""
    copy = tmp_path_factory.mktemp("grown")
    for name in ("Vagrantfile", "kitchen.yml"):
        shutil.copy(ROOT / name, copy / name)
    for name in ("pillar", "salt"):
        shutil.copytree(ROOT / name, copy / name)
    (copy / "lab").mkdir()
    for name in ("minion", "secrets.py", "manifest.py"):
        shutil.copy(ROOT / "lab" / name, copy / "lab" / name)
    raw = json.loads((ROOT / "pillar/lab/manifest.json").read_text())
    (copy / "pillar/lab/manifest.json").write_text(
        json.dumps(manifest.with_machine(raw, NEW, LIKE, ADDRESS), indent=2))
    gen = subprocess.run([sys.executable, "-I", str(copy / "lab/secrets.py"),
                          "--state-dir", str(copy / "state")],
                         capture_output=True, text=True, check=False, timeout=120)
    assert gen.returncode == 0, gen.stderr
    return copy


def test_manifest_reader_sees_it(grown: Path) -> None:
    lab = manifest.load(path=grown / "pillar/lab/manifest.json")
    assert manifest.names(lab) == ["prosody", "ejabberd1", "ejabberd2", NEW, "lb"]
    assert lab["cluster"]["ejabberd"] == ["ejabberd1", "ejabberd2", NEW]
    assert manifest.after(lab, "lb") == []


@pytest.mark.vagrant_cli
def test_vagrantfile_defines_it(grown: Path) -> None:
    # `vagrant status` in the copy (its Vagrantfile reads the grown manifest).
    assert defined_machines(grown) == ["prosody", "ejabberd1", "ejabberd2", NEW, "lb"]


def test_harness_boots_and_orders_it(grown: Path) -> None:
    lab = harness.Lab("trixie", grown / "state", manifest_path=grown / "pillar/lab/manifest.json")
    assert list(lab.names or ()) == ["prosody", "ejabberd1", "ejabberd2", NEW, "lb"]
    assert lab.addresses[NEW] == f"{harness.SUBNET}.14"
    assert manifest.waves(lab.spec) == [["prosody", "ejabberd1", "ejabberd2", NEW, "lb"]]


@pytest.mark.ruby
def test_kitchen_has_a_suite_for_it(grown: Path) -> None:
    script = ('require "erb"; require "yaml"; require "json"; '
              'puts JSON.generate(YAML.safe_load(ERB.new(File.read("kitchen.yml")).result))')
    res = subprocess.run(["ruby", "-e", script], cwd=grown, capture_output=True, text=True,
                         check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    suites = {s["name"]: s for s in json.loads(res.stdout)["suites"]}
    assert list(suites) == ["prosody", "ejabberd1", "ejabberd2", NEW, "lb"]
    assert suites[NEW]["driver"]["network"] == [["private_network", {"ip": ADDRESS}]]
    assert suites[NEW]["provisioner"]["salt_minion_id"] == NEW


def test_secrets_and_client_config_follow(grown: Path) -> None:
    accounts = tomllib.loads((grown / "state/client.toml").read_text())["accounts"]
    lb = manifest.load(path=grown / "pillar/lab/manifest.json")["hosts"]["lb"]
    assert accounts["alice@ejabberd"]["server"] == f"{lb}:5222"


@pytest.fixture(scope="module")
def salt(grown: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """pillar.items and a mock apply of the new node and of the balancer."""
    work = tmp_path_factory.mktemp("grown-salt")
    jobs = [(m, args) for m in (NEW, "lb")
            for args in (("pillar.items", "unmask=True"), ("state.apply", "mock=True"))]

    def one(job: tuple[str, tuple[str, ...]]) -> Any:
        machine, args = job
        conf = saltlocal.config_dir(work / f"{machine}-{args[0]}", grown / "state",
                                    checkout=grown, grains=GRAINS)
        res = saltlocal.salt_call(conf, machine, *args)
        assert res.returncode == 0, f"{machine} {args}: {res.stdout[-3000:]}{res.stderr[-2000:]}"
        return json.loads(res.stdout)["local"]

    with ThreadPoolExecutor(max_workers=2) as pool:
        outs = list(pool.map(one, jobs))
    return {f"{m} {args[0]}": out for (m, args), out in zip(jobs, outs, strict=True)}


@pytest.mark.salt
def test_pillar_gives_it_its_role_and_the_cluster(salt: dict[str, Any]) -> None:
    pillar = salt[f"{NEW} pillar.items"]
    assert "_errors" not in pillar, pillar.get("_errors")
    assert pillar["roles"] == ["ejabberd"]
    assert pillar["ejabberd"]["node"] == f"ejabberd@{NEW}"
    assert pillar["ejabberd"]["dist_interface"] == ADDRESS
    nodes = ["ejabberd@ejabberd1", "ejabberd@ejabberd2", f"ejabberd@{NEW}"]
    assert pillar["ejabberd"]["cluster"]["nodes"] == nodes
    assert pillar["lab"]["hosts"][NEW] == ADDRESS
    assert salt["lb pillar.items"]["haproxy"]["servers"][NEW] == ADDRESS


@pytest.mark.salt
def test_mock_apply_joins_it_and_balances_to_it(salt: dict[str, Any]) -> None:
    for machine in (NEW, "lb"):
        ret = salt[f"{machine} state.apply"]
        assert isinstance(ret, dict), ret
        failed = {k: v.get("comment") for k, v in ret.items() if v.get("result") is False}
        assert not failed, (machine, failed)
    ran = {v["__id__"] for v in salt[f"{NEW} state.apply"].values()}
    assert "ejabberd-cluster-joined-ejabberd@ejabberd1" in ran
    assert not [s for s in ran if s.startswith("ejabberd-user-")]  # the seed registers
