"""goldmaster diff on real bundles, local and in a registry."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest

from bundle_factory import make_bundle, make_code, run_cli, run_json
from goldmaster.diff import diff_manifests, origin_text
from goldmaster.verify import read_manifest
from registry_fixtures import RegistryServer

pytestmark = pytest.mark.usefixtures("registry_env")

SHARED = os.urandom(50_000)


def two_bundles(tmp_path: Path) -> tuple[Path, Path]:
    """Bundles that differ in weights, parameters, metrics and code commit."""
    code = make_code(tmp_path / "code", {"train.py": "print(1)\n"}, git=True)
    a = make_bundle(
        tmp_path / "a",
        "model",
        "1.0",
        weights={"shared.bin": SHARED, "model.bin": b"a" * 1000, "old.bin": b"old"},
        params={"lr": 0.001, "optimizer": "adam", "epochs": 3},
        metrics={"accuracy": 0.9, "loss": 0.5},
        code=code,
    )
    make_code(code, {"train.py": "print(2)\n"}, git=True)
    b = make_bundle(
        tmp_path / "b",
        "model",
        "1.1",
        weights={"shared.bin": SHARED, "model.bin": b"b" * 1000, "new.bin": b"new"},
        params={"lr": 0.0005, "optimizer": "sgd", "batch": 32},
        metrics={"accuracy": 0.95, "loss": 0.5},
        code=code,
    )
    return a, b


def test_diff_reports_weights(tmp_path: Path) -> None:
    a, b = two_bundles(tmp_path)
    result = run_json("diff", a, b)
    weights = result["weights"]
    assert result["schema"] == "goldmaster.diff/v1"
    assert result["identical"] is False
    assert [item["path"] for item in weights["changed"]] == ["weights/model.bin"]
    assert [item["path"] for item in weights["added"]] == ["weights/new.bin"]
    assert [item["path"] for item in weights["removed"]] == ["weights/old.bin"]
    assert weights["unchanged"] == 1
    assert result["a"]["model_digest"] != result["b"]["model_digest"]


def test_diff_reports_params_and_metrics(tmp_path: Path) -> None:
    a, b = two_bundles(tmp_path)
    result = run_json("diff", a, b)
    params = {item["key"]: item for item in result["params"]["changed"]}
    assert params["lr"]["a"] == 0.001
    assert params["lr"]["b"] == 0.0005
    assert params["lr"]["delta"] == pytest.approx(-0.0005)
    assert params["lr"]["relative"] == pytest.approx(-0.5)
    assert params["optimizer"]["delta"] is None
    assert result["params"]["added"] == [{"key": "batch", "value": 32}]
    assert result["params"]["removed"] == [{"key": "epochs", "value": 3}]
    metrics = result["metrics"]
    assert [item["key"] for item in metrics["changed"]] == ["accuracy"]
    assert metrics["changed"][0]["delta"] == pytest.approx(0.05)
    assert metrics["unchanged"] == 1


def test_diff_reports_code_commit(tmp_path: Path) -> None:
    a, b = two_bundles(tmp_path)
    result = run_json("diff", a, b)
    code = result["code"]
    assert code["changed"] == ["commit"]
    assert code["a"]["commit"] != code["b"]["commit"]
    assert [item["path"] for item in code["files"]["changed"]] == ["code/train.py"]


def test_diff_text_shows_deltas(tmp_path: Path) -> None:
    a, b = two_bundles(tmp_path)
    result = run_cli("diff", a, b)
    assert result.exit_code == 0, result.output
    assert "changed  lr  0.001 -> 0.0005  (-0.0005, -50.0%)" in result.stdout
    assert "added    weights/new.bin" in result.stdout
    assert "removed  weights/old.bin" in result.stdout
    assert "Packages: not compared, no environment recorded in a and b" in result.stdout


def test_diff_exit_code_option(tmp_path: Path) -> None:
    a, b = two_bundles(tmp_path)
    same = run_cli("diff", a, a, "--exit-code")
    different = run_cli("diff", a, b, "--exit-code")
    assert same.exit_code == 0
    assert "no differences" in same.stdout
    assert different.exit_code == 1


def test_diff_rejects_missing_bundle(tmp_path: Path) -> None:
    a, _ = two_bundles(tmp_path)
    result = run_cli("diff", a, tmp_path / "missing.gm.tar.zst")
    assert result.exit_code == 2
    assert "bundle not found" in result.stderr


def test_diff_remote_reads_manifests_only(
    oci_registry: RegistryServer, tmp_path: Path
) -> None:
    a, b = two_bundles(tmp_path)
    refs = []
    for bundle in (a, b):
        pushed = run_json(
            "push", bundle, f"{oci_registry.address}/team/diffed", "--insecure"
        )
        refs.append((pushed["reference"], "sha256:" + pushed["sha256"]))

    remote = run_json("diff", refs[0][0], refs[1][0], "--insecure")
    local = run_json("diff", a, b)

    for key in ("weights", "packages", "system", "code", "params", "metrics"):
        assert remote[key] == local[key]
    for _, bundle_digest in refs:
        assert oci_registry.blob_gets("team/diffed", bundle_digest) == 0


# -- sections that capture probes add: environment and system ---------------------


def with_sections(manifest: dict[str, Any], **sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(manifest)
    data.update(sections)
    return data


def distribution(name: str, version: str, **origin: Any) -> dict[str, Any]:
    return {
        "name": name,
        "version": version,
        "installer": "pip",
        "requested": True,
        "origin": origin or {"kind": "index"},
        "vendored": None,
    }


def test_diff_packages(tmp_path: Path) -> None:
    base = read_manifest(make_bundle(tmp_path))

    a = with_sections(
        base,
        environment={
            "distributions": [
                distribution("numpy", "1.26.4"),
                distribution("PyYAML", "6.0.1"),
                distribution("requests", "2.31.0"),
                distribution(
                    "mylib", "0.1", kind="dir", path="/src/mylib", exists=True
                ),
            ]
        },
    )
    b = with_sections(
        base,
        environment={
            "distributions": [
                distribution("numpy", "2.0.0"),
                distribution("pyyaml", "6.0.1"),
                distribution("torch", "2.3.0"),
                distribution(
                    "mylib",
                    "0.1",
                    kind="vcs",
                    url="https://example.invalid/mylib.git",
                    commit="abc123",
                ),
            ]
        },
    )

    packages = diff_manifests(a, b).packages

    assert packages["compared"] is True
    assert [item["name"] for item in packages["added"]] == ["torch"]
    assert [item["name"] for item in packages["removed"]] == ["requests"]
    changed = {item["name"]: item for item in packages["changed"]}
    assert set(changed) == {"numpy", "mylib"}
    assert changed["numpy"]["version"] == {"a": "1.26.4", "b": "2.0.0"}
    assert changed["numpy"]["origin"] is None
    assert changed["mylib"]["version"] is None
    assert changed["mylib"]["origin"]["b"]["kind"] == "vcs"
    assert packages["unchanged"] == 1  # PyYAML and pyyaml are one project


def test_diff_packages_absent_environment(tmp_path: Path) -> None:
    base = read_manifest(make_bundle(tmp_path))
    b = with_sections(
        base, environment={"distributions": [distribution("numpy", "2.0.0")]}
    )
    packages = diff_manifests(base, b).packages
    assert packages["compared"] is False
    assert packages["recorded"] == {"a": False, "b": True}
    assert packages["added"] == []


def test_diff_ignores_origin_existence(tmp_path: Path) -> None:
    base = read_manifest(make_bundle(tmp_path))
    a = with_sections(
        base,
        environment={
            "distributions": [
                distribution("x", "1", kind="dir", path="/p", exists=True)
            ]
        },
    )
    b = with_sections(
        base,
        environment={
            "distributions": [
                distribution("x", "1", kind="dir", path="/p", exists=False)
            ]
        },
    )
    assert diff_manifests(a, b).packages["changed"] == []


def system_section(runtime: str, driver: str, gpu: str, python: str) -> dict[str, Any]:
    return {
        "python": {"version": python, "executable": "/usr/bin/python3"},
        "nvidia": {
            "driver_version": {"value": driver, "source": "nvidia-smi"},
            "cuda_driver_version": {"value": "12.4", "source": "nvidia-smi"},
            "gpus": [
                {"index": 0, "name": gpu, "uuid": f"GPU-{os.urandom(4).hex()}"},
            ],
        },
        "cuda": {
            "runtime_version": {"value": runtime, "source": "libcudart.so"},
            "toolkit": {"cudnn_header": {"status": "not-found", "reason": "no header"}},
        },
        "kernel": {"release": "6.1.0", "source": "uname(2)"},
    }


def test_diff_system(tmp_path: Path) -> None:
    base = read_manifest(make_bundle(tmp_path))
    a = with_sections(
        base, system=system_section("12.1", "535.104.05", "NVIDIA A100", "3.11.7")
    )
    b = with_sections(
        base, system=system_section("12.4", "550.54.15", "NVIDIA H100", "3.11.7")
    )
    system = diff_manifests(a, b).system
    assert system["changed"] == ["nvidia_driver", "cuda_runtime", "gpus"]
    assert system["a"]["cuda_runtime"] == "12.1"
    assert system["b"]["gpus"] == ["NVIDIA H100"]
    assert system["a"]["python"] == "3.11.7"
    assert "cudnn" not in system["a"]


def test_diff_same_gpu_model_is_unchanged(tmp_path: Path) -> None:
    base = read_manifest(make_bundle(tmp_path))
    a = with_sections(
        base, system=system_section("12.1", "535", "NVIDIA A100", "3.11.7")
    )
    b = with_sections(
        base, system=system_section("12.1", "535", "NVIDIA A100", "3.11.7")
    )
    result = diff_manifests(a, b)
    assert result.system["changed"] == []
    assert result.identical is True


def test_diff_system_absent(tmp_path: Path) -> None:
    base = read_manifest(make_bundle(tmp_path))
    base.pop("system", None)
    b = with_sections(
        base, system=system_section("12.4", "550", "NVIDIA H100", "3.11.7")
    )
    system = diff_manifests(base, b).system
    assert system["recorded"] == {"a": False, "b": True}
    assert "cuda_runtime" in system["changed"]
    assert system["a"] == {}


def test_diff_values_bool_is_not_number(tmp_path: Path) -> None:
    base = read_manifest(make_bundle(tmp_path))
    a = with_sections(base, params={"flag": True, "count": 1})
    b = with_sections(base, params={"flag": 1, "count": 1.0})
    changed = diff_manifests(a, b).params["changed"]
    assert [item["key"] for item in changed] == ["flag"]
    assert changed[0]["delta"] is None


def test_origin_text() -> None:
    assert origin_text({"kind": "index"}) == "index"
    assert (
        origin_text({"kind": "vcs", "requirement_url": "git+https://x.invalid/r@abc"})
        == "vcs git+https://x.invalid/r@abc"
    )
    assert origin_text(None) == "unknown"
