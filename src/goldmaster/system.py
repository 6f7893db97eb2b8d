"""Record the host system: OS, kernel, glibc, CPU, memory, container, environment.

Every reader takes the file system root as a parameter so that a restore host
and a capture host are probed the same way. Missing or unreadable sources are
recorded as ``status`` and ``reason`` entries; nothing here raises for them.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goldmaster.parts import Part
from goldmaster.redact import redact_text

# x86-64 micro-architecture levels as the x86-64 psABI and glibc's ISA levels
# (GNU_PROPERTY_X86_ISA_1_V2 to _V4) define them, spelled as Linux names the
# flags in /proc/cpuinfo: SSE3 is "pni", LAHF-SAHF is "lahf_lm", LZCNT is "abm".
X86_64_LEVEL_FLAGS: dict[int, frozenset[str]] = {
    2: frozenset({"cx16", "lahf_lm", "popcnt", "pni", "sse4_1", "sse4_2", "ssse3"}),
    3: frozenset(
        {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
    ),
    4: frozenset({"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}),
}

# Variables recorded with their values: they change how CUDA, NCCL, the
# frameworks and Python behave. Every other variable is recorded by name only.
ENV_VALUE_PREFIXES = (
    "CUDA_",
    "CUDNN_",
    "CUBLAS_",
    "CUBLASLT_",
    "NCCL_",
    "NVIDIA_",
    "NV_",
    "PYTHON",
    "PYTORCH_",
    "TORCH_",
    "TORCHINDUCTOR_",
    "XLA_",
    "JAX_",
    "TF_",
    "OMP_",
    "MKL_",
    "KMP_",
    "OPENBLAS_",
)
ENV_VALUE_NAMES = frozenset(
    {
        "CONDA_DEFAULT_ENV",
        "CONDA_PREFIX",
        "HF_DATASETS_CACHE",
        "HF_DATASETS_OFFLINE",
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_HUB_OFFLINE",
        "LANG",
        "LC_ALL",
        "LD_LIBRARY_PATH",
        "LD_PRELOAD",
        "PATH",
        "SOURCE_DATE_EPOCH",
        "TOKENIZERS_PARALLELISM",
        "TRANSFORMERS_CACHE",
        "TRANSFORMERS_OFFLINE",
        "TZ",
        "VIRTUAL_ENV",
    }
)
# A variable whose name contains one of these words keeps its value out of the
# manifest even when its prefix is allowed (NVIDIA_API_KEY, HF_TOKEN, ...).
ENV_SECRET_WORDS = frozenset(
    {
        "AUTH",
        "COOKIE",
        "CREDENTIAL",
        "CREDENTIALS",
        "KEY",
        "APIKEY",
        "PASS",
        "PASSWD",
        "PASSWORD",
        "PRIVATE",
        "SECRET",
        "SESSION",
        "TOKEN",
    }
)

_CGROUP_ENGINES = (
    ("kubepods", "kubernetes"),
    ("libpod", "podman"),
    ("docker", "docker"),
    ("containerd", "containerd"),
    ("lxc", "lxc"),
)


def probe_host(
    root: Path = Path("/"), environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], list[Part]]:
    """Collect the host facts and the raw files worth keeping in the bundle."""
    env = os.environ if environ is None else environ
    os_release, os_release_raw = read_os_release(root)
    data: dict[str, Any] = {
        "os": os_release,
        "kernel": kernel_info(),
        "glibc": glibc_version(),
        "cpu": read_cpu(root),
        "memory": read_memory(root),
        "container": detect_container(root, env),
        "env": record_environment(env),
    }
    parts = []
    if os_release_raw is not None:
        parts.append(Part("system/os-release", data=os_release_raw))
    return data, parts


def read_os_release(root: Path) -> tuple[dict[str, Any], bytes | None]:
    """Read os-release(5) from ``/etc`` or, failing that, ``/usr/lib``."""
    for relative in ("etc/os-release", "usr/lib/os-release"):
        path = root / relative
        try:
            raw = path.read_bytes()
        except OSError:
            continue
        fields = parse_os_release(raw.decode("utf-8", errors="replace"))
        record: dict[str, Any] = {
            key.lower(): fields[key]
            for key in ("ID", "ID_LIKE", "VERSION_ID", "VERSION_CODENAME", "NAME")
            if key in fields
        }
        record["pretty_name"] = fields.get("PRETTY_NAME", fields.get("NAME", "Linux"))
        record["source"] = "/" + relative
        return record, raw
    return {
        "status": "not-found",
        "reason": "no /etc/os-release or /usr/lib/os-release",
    }, None


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release text: KEY=value lines with shell quoting."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            words = [value.strip("\"'")]
        fields[key.strip()] = " ".join(words)
    return fields


def kernel_info() -> dict[str, Any]:
    """Return the running kernel's release, build string and machine type."""
    uname = platform.uname()
    return {
        "release": uname.release,
        "version": uname.version,
        "machine": uname.machine,
        "source": "uname(2)",
    }


def glibc_version() -> dict[str, Any]:
    """Return the C library in use, as the dynamic loader reports it."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        text = None
    if text:
        name, _, version = text.partition(" ")
        return {
            "name": name,
            "version": version,
            "source": "confstr(CS_GNU_LIBC_VERSION)",
        }

    name, version = platform.libc_ver()
    if name and version:
        return {"name": name, "version": version, "source": "platform.libc_ver()"}
    reason = "the C library is not glibc (musl, for example) or reports no version"
    return {"status": "not-found", "reason": reason}


def read_cpu(root: Path) -> dict[str, Any]:
    """Describe the CPU from ``/proc/cpuinfo``, including the x86-64 level."""
    architecture = platform.machine()
    record: dict[str, Any] = {"architecture": architecture}
    path = root / "proc/cpuinfo"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        record.update(status="not-readable", reason=f"{path}: {exc.strerror or exc}")
        record["logical_cpus"] = os.cpu_count()
        return record

    record.update(parse_cpuinfo(text))
    record["source"] = "/proc/cpuinfo"
    if architecture in ("x86_64", "AMD64"):
        record["x86_64_level"] = x86_64_level(set(record.pop("flags", [])))
    else:
        record.pop("flags", None)
    return record


def parse_cpuinfo(text: str) -> dict[str, Any]:
    """Extract model, vendor, logical CPU count and feature flags."""
    first: dict[str, str] = {}
    processors = 0
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        if key == "processor":
            processors += 1
        first.setdefault(key, value.strip())

    record: dict[str, Any] = {"logical_cpus": processors or os.cpu_count()}
    model = first.get("model name") or first.get("Model") or first.get("cpu model")
    if model:
        record["model"] = model
    if "vendor_id" in first:
        record["vendor"] = first["vendor_id"]
    if "CPU implementer" in first:
        record["implementer"] = first["CPU implementer"]
        record["part"] = first.get("CPU part")
    flags = first.get("flags") or first.get("Features") or ""
    record["flags"] = sorted(set(flags.split()))
    return record


def x86_64_level(flags: set[str]) -> int:
    """Return the highest x86-64 level (1 to 4) whose flags are all present."""
    level = 1
    for candidate in (2, 3, 4):
        if not X86_64_LEVEL_FLAGS[candidate] <= flags:
            break
        level = candidate
    return level


def missing_level_flags(flags: set[str], level: int) -> list[str]:
    """Return the flags that keep a CPU from reaching x86-64 ``level``."""
    needed: set[str] = set()
    for candidate in range(2, level + 1):
        needed |= X86_64_LEVEL_FLAGS[candidate]
    return sorted(needed - flags)


def read_memory(root: Path) -> dict[str, Any]:
    """Return the total physical memory from ``/proc/meminfo``."""
    path = root / "proc/meminfo"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return {"status": "not-readable", "reason": f"{path}: {exc.strerror or exc}"}
    match = re.search(r"^MemTotal:\s+(\d+)\s+kB", text, re.MULTILINE)
    if match is None:
        return {"status": "not-found", "reason": f"{path} has no MemTotal line"}
    return {
        "total_bytes": int(match.group(1)) * 1024,
        "source": "/proc/meminfo MemTotal",
    }


def detect_container(root: Path, environ: Mapping[str, str]) -> dict[str, Any]:
    """Tell whether this process runs in a container, and name the evidence."""
    kinds: set[str] = set()
    evidence: set[str] = set()
    if (root / ".dockerenv").exists():
        kinds.add("docker")
        evidence.add("/.dockerenv exists")
    if (root / "run/.containerenv").exists():
        kinds.add("podman")
        evidence.add("/run/.containerenv exists")
    if environ.get("container"):
        kinds.add(environ["container"])
        evidence.add(f"container={environ['container']} in the environment")
    if environ.get("KUBERNETES_SERVICE_HOST"):
        kinds.add("kubernetes")
        evidence.add("KUBERNETES_SERVICE_HOST is set")

    try:
        cgroup = (root / "proc/1/cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cgroup = ""
    for marker, kind in _CGROUP_ENGINES:
        if marker in cgroup:
            kinds.add(kind)
            evidence.add(f"/proc/1/cgroup mentions {marker}")

    return {
        "detected": bool(kinds),
        "kinds": sorted(kinds),
        "evidence": sorted(evidence),
    }


def record_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Split the environment into allow-listed values and names only.

    Values keep their URLs' credentials replaced, and variables whose names
    suggest a secret are kept by name only even when their prefix is allowed.
    """
    values: dict[str, str] = {}
    names_only: list[str] = []
    for name in sorted(environ):
        if env_value_allowed(name):
            values[name] = redact_text(environ[name])
        else:
            names_only.append(name)
    return {"values": values, "names_only": names_only, "source": "process environment"}


def env_value_allowed(name: str) -> bool:
    """Tell whether the value of variable ``name`` may be recorded."""
    words = set(re.split(r"[_\W]+", name.upper()))
    if words & ENV_SECRET_WORDS:
        return False
    return name in ENV_VALUE_NAMES or name.startswith(ENV_VALUE_PREFIXES)
