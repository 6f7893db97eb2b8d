"""Compare the manifests of two bundles: weights, packages, system, code,
parameters and metrics.

Only manifests are compared, so a diff of two remote bundles downloads two
small blobs. Sections that one bundle lacks (an older capture without an
environment or system section) are reported as not compared, not as changes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from .manifest import model_digest

SCHEMA = "goldmaster.diff/v1"

# Manifest paths of each system fact, tried in order. Values recorded as
# {"value": ..., "source": ...} or {"version": ...} are unwrapped, and a
# record with only a "status" (the probe found nothing) counts as absent.
SYSTEM_FACTS: dict[str, list[tuple[str, ...]]] = {
    "python": [
        ("environment", "interpreter", "version"),
        ("system", "python", "version"),
        ("system", "python"),
    ],
    "nvidia_driver": [
        ("system", "nvidia", "driver_version"),
        ("system", "driver", "version"),
    ],
    "cuda_driver_api": [("system", "nvidia", "cuda_driver_version")],
    "cuda_runtime": [
        ("system", "cuda", "runtime_version"),
        ("system", "cuda", "runtime"),
    ],
    "cuda_toolkit": [
        ("system", "cuda", "toolkit", "version"),
        ("system", "cuda", "toolkit", "version_json", "version"),
        ("system", "cuda", "toolkit", "nvcc", "version"),
    ],
    "cudnn": [
        ("system", "cuda", "cudnn"),
        ("system", "cuda", "toolkit", "cudnn_header"),
    ],
    "nccl": [("system", "cuda", "nccl"), ("system", "nccl")],
    "gpus": [("system", "nvidia", "gpus"), ("system", "gpus")],
    "os": [("system", "os", "pretty_name"), ("system", "os", "PRETTY_NAME")],
    "kernel": [("system", "kernel", "release")],
    "glibc": [("system", "glibc", "version")],
}


@dataclass
class ManifestDiff:
    """Changes from bundle ``a`` to bundle ``b``, section by section."""

    a: dict[str, Any]
    b: dict[str, Any]
    weights: dict[str, Any]
    packages: dict[str, Any]
    system: dict[str, Any]
    code: dict[str, Any]
    params: dict[str, Any]
    metrics: dict[str, Any]

    @property
    def identical(self) -> bool:
        """True when no compared section has a change."""
        return not (
            _files_changed(self.weights)
            or _mapping_changed(self.packages)
            or self.system["changed"]
            or self.code["changed"]
            or _files_changed(self.code["files"])
            or _mapping_changed(self.params)
            or _mapping_changed(self.metrics)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "a": self.a,
            "b": self.b,
            "identical": self.identical,
            "weights": self.weights,
            "packages": self.packages,
            "system": self.system,
            "code": self.code,
            "params": self.params,
            "metrics": self.metrics,
        }


def diff_manifests(
    a: dict[str, Any], b: dict[str, Any], source_a: str = "a", source_b: str = "b"
) -> ManifestDiff:
    """Compare two manifests; ``source_a`` and ``source_b`` name where they came from."""
    return ManifestDiff(
        a=_identity(a, source_a),
        b=_identity(b, source_b),
        weights=diff_files(a, b, "weights/"),
        packages=diff_packages(a, b),
        system=diff_system(a, b),
        code=diff_code(a, b),
        params=diff_values(a.get("params") or {}, b.get("params") or {}),
        metrics=diff_values(a.get("metrics") or {}, b.get("metrics") or {}),
    )


def _identity(manifest: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "source": source,
        "name": manifest.get("name"),
        "version": manifest.get("version"),
        "created": manifest.get("created"),
        "model_digest": model_digest(manifest),
    }


def _files_changed(section: dict[str, Any]) -> bool:
    return bool(section["added"] or section["removed"] or section["changed"])


def _mapping_changed(section: dict[str, Any]) -> bool:
    return bool(
        section.get("added") or section.get("removed") or section.get("changed")
    )


# ---------------------------------------------------------------------------
# Files


def diff_files(a: dict[str, Any], b: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Compare the files under ``prefix`` by path, size and sha256."""
    files_a = _files(a, prefix)
    files_b = _files(b, prefix)
    changed = [
        {
            "path": path,
            "a": _size_digest(files_a[path]),
            "b": _size_digest(files_b[path]),
        }
        for path in sorted(files_a.keys() & files_b.keys())
        if _size_digest(files_a[path]) != _size_digest(files_b[path])
    ]
    return {
        "added": [
            _file_entry(files_b[path])
            for path in sorted(files_b.keys() - files_a.keys())
        ],
        "removed": [
            _file_entry(files_a[path])
            for path in sorted(files_a.keys() - files_b.keys())
        ],
        "changed": changed,
        "unchanged": len(files_a.keys() & files_b.keys()) - len(changed),
    }


def _files(manifest: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    return {
        entry["path"]: entry
        for entry in manifest.get("files", [])
        if entry["path"].startswith(prefix)
    }


def _file_entry(entry: dict[str, Any]) -> dict[str, Any]:
    return {"path": entry["path"], "size": entry["size"], "sha256": entry["sha256"]}


def _size_digest(entry: dict[str, Any]) -> dict[str, Any]:
    return {"size": entry["size"], "sha256": entry["sha256"]}


# ---------------------------------------------------------------------------
# Packages


def diff_packages(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Compare ``environment.distributions`` by normalised name (PEP 503):
    added, removed, and changed in version or origin."""
    dists_a = _distributions(a)
    dists_b = _distributions(b)
    result: dict[str, Any] = {
        "compared": dists_a is not None and dists_b is not None,
        "recorded": {"a": dists_a is not None, "b": dists_b is not None},
        "added": [],
        "removed": [],
        "changed": [],
        "unchanged": 0,
    }
    if dists_a is None or dists_b is None:
        return result
    result["added"] = [
        _package(dists_b[k]) for k in sorted(dists_b.keys() - dists_a.keys())
    ]
    result["removed"] = [
        _package(dists_a[k]) for k in sorted(dists_a.keys() - dists_b.keys())
    ]
    for key in sorted(dists_a.keys() & dists_b.keys()):
        change = _package_change(dists_a[key], dists_b[key])
        if change is None:
            result["unchanged"] += 1
        else:
            result["changed"].append(change)
    return result


def _distributions(manifest: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
    environment = manifest.get("environment")
    if not isinstance(environment, dict):
        return None
    items = environment.get("distributions")
    if not isinstance(items, list):
        return None
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        if isinstance(item, dict) and item.get("name"):
            # The first of several same-named distributions is the one imported.
            found.setdefault(normalize_name(str(item["name"])), item)
    return found


def normalize_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _package(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": item.get("name"),
        "version": item.get("version"),
        "origin": item.get("origin"),
    }


def _package_change(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any] | None:
    version_changed = a.get("version") != b.get("version")
    origin_changed = _origin_key(a.get("origin")) != _origin_key(b.get("origin"))
    if not (version_changed or origin_changed):
        return None
    return {
        "name": b.get("name"),
        "version": {"a": a.get("version"), "b": b.get("version")}
        if version_changed
        else None,
        "origin": {"a": a.get("origin"), "b": b.get("origin")}
        if origin_changed
        else None,
    }


def _origin_key(origin: Any) -> Any:
    """Return the parts of an origin that identify where a package came from.

    ``exists`` records whether a local path existed on the capture host,
    which is a fact about that host, not about the package.
    """
    if isinstance(origin, dict):
        return {k: v for k, v in origin.items() if k != "exists"}
    return origin


def origin_text(origin: Any) -> str:
    """Summarise an origin record in one line, for example ``vcs git+https://...@abc123``."""
    if origin is None:
        return "unknown"
    if not isinstance(origin, dict):
        return str(origin)
    kind = str(origin.get("kind", "unknown"))
    where = origin.get("requirement_url") or origin.get("url") or origin.get("path")
    text = f"{kind} {where}" if where else kind
    if origin.get("channel"):
        text += f" ({origin['channel']})"
    return text


# ---------------------------------------------------------------------------
# System


def diff_system(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Compare Python, the NVIDIA driver, CUDA, cuDNN, NCCL, GPUs and the OS."""
    facts_a = system_facts(a)
    facts_b = system_facts(b)
    changed = [
        name
        for name in SYSTEM_FACTS
        if (name in facts_a or name in facts_b)
        and facts_a.get(name) != facts_b.get(name)
    ]
    return {
        "recorded": {"a": "system" in a, "b": "system" in b},
        "a": facts_a,
        "b": facts_b,
        "changed": changed,
    }


def system_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the system facts that a manifest records, by name."""
    facts: dict[str, Any] = {}
    for name, paths in SYSTEM_FACTS.items():
        for path in paths:
            value = _unwrap(_lookup(manifest, path))
            if name == "gpus" and isinstance(value, list):
                value = [_gpu_text(gpu) for gpu in value]
            if value not in (None, "", [], {}):
                facts[name] = value
                break
    return facts


def _lookup(data: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if "value" in value:
            return _unwrap(value["value"])
        if "version" in value:
            return _unwrap(value["version"])
        return None if "status" in value or "reason" in value else value
    return value


def _gpu_text(gpu: Any) -> str:
    """Name a GPU by model and compute capability, leaving out its serial
    number and bus address, which differ between two cards of one model."""
    if not isinstance(gpu, dict):
        return str(gpu)
    name = str(gpu.get("name", "unknown GPU"))
    capability = _unwrap(gpu.get("compute_capability"))
    return f"{name} (compute {capability})" if capability else name


# ---------------------------------------------------------------------------
# Code


CODE_FACTS = ("commit", "branch", "dirty", "remote", "uncommitted_diff")


def diff_code(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Compare the git commit, branch, dirty flag, remote, the sha256 of the
    uncommitted diff, and the code files."""
    facts_a = code_facts(a)
    facts_b = code_facts(b)
    return {
        "a": facts_a,
        "b": facts_b,
        "changed": [name for name in CODE_FACTS if facts_a[name] != facts_b[name]],
        "files": diff_files(a, b, "code/"),
    }


def code_facts(manifest: dict[str, Any]) -> dict[str, Any]:
    git = (manifest.get("code") or {}).get("git") or {}
    remote = git.get("remote") or {}
    diff_path = git.get("diff")
    diff_entry = _files(manifest, "git/").get(diff_path) if diff_path else None
    return {
        "commit": git.get("commit"),
        "branch": git.get("branch"),
        "dirty": git.get("dirty"),
        "remote": remote.get("url") if isinstance(remote, dict) else remote,
        "uncommitted_diff": diff_entry["sha256"] if diff_entry else None,
    }


# ---------------------------------------------------------------------------
# Parameters and metrics


def diff_values(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Compare two mappings of names to values. Changed numbers get ``delta``
    (b - a) and ``relative`` (delta / |a|, absent when a is 0)."""
    changed = []
    for key in sorted(a.keys() & b.keys()):
        if a[key] == b[key] and isinstance(a[key], bool) == isinstance(b[key], bool):
            continue
        changed.append({"key": key, "a": a[key], "b": b[key], **_delta(a[key], b[key])})
    return {
        "added": [{"key": k, "value": b[k]} for k in sorted(b.keys() - a.keys())],
        "removed": [{"key": k, "value": a[k]} for k in sorted(a.keys() - b.keys())],
        "changed": changed,
        "unchanged": len(a.keys() & b.keys()) - len(changed),
    }


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _delta(a: Any, b: Any) -> dict[str, Any]:
    if not (_is_number(a) and _is_number(b)):
        return {"delta": None, "relative": None}
    delta = b - a
    if isinstance(delta, float):
        delta = round(delta, 12)
    relative = round(delta / abs(a), 12) if a != 0 else None
    return {"delta": delta, "relative": relative}
