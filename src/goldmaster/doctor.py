"""Compare this host with the one a bundle was captured on.

``compare_host`` takes two ``system`` sections (the captured one from a
manifest, the other from probing this host) and returns findings, each with a
severity, a stable code, a message and advice. A check whose facts are missing
on either side is skipped, so bundles from hosts without GPUs, or from older
goldmaster versions, compare without noise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from goldmaster import cuda_compat
from goldmaster.errors import HostMismatchError

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)

# Examples for advice: glibc of common base images, from each distribution's
# libc6 or glibc package in its release.
GLIBC_OF_DISTRIBUTIONS = (
    ("RHEL 8 / Rocky 8", "2.28"),
    ("Ubuntu 20.04", "2.31"),
    ("Debian 11", "2.31"),
    ("RHEL 9 / Rocky 9", "2.34"),
    ("Ubuntu 22.04", "2.35"),
    ("Debian 12", "2.36"),
    ("Ubuntu 24.04", "2.39"),
)


@dataclass(frozen=True)
class Finding:
    """One difference between the captured host and this one."""

    severity: str
    code: str
    message: str
    advice: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


Check = Callable[[dict[str, Any], dict[str, Any]], list[Finding]]


def compare_host(captured: dict[str, Any], host: dict[str, Any]) -> list[Finding]:
    """Compare two ``system`` sections and return the findings.

    ``captured`` is the manifest's ``system`` section, ``host`` the section
    probed on this host. Findings come errors first, then warnings, then
    information.
    """
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(captured, host))
    return sorted(
        findings, key=lambda f: (SEVERITIES.index(f.severity), f.code, f.message)
    )


def enforce(findings: list[Finding], strict: bool, flag: str = "--strict") -> None:
    """Raise HostMismatchError when ``strict`` and a finding is an error.

    ``flag`` names the option that asked for strict checking, for the hint.
    """
    errors = [finding for finding in findings if finding.severity == ERROR]
    if strict and errors:
        codes = ", ".join(sorted({finding.code for finding in errors}))
        raise HostMismatchError(
            f"this host cannot run what the bundle captured ({codes})",
            f"follow the advice printed with each finding, or run without {flag} to only warn",
        )


# --- checks --------------------------------------------------------------------


def check_gpu_present(captured: dict[str, Any], host: dict[str, Any]) -> list[Finding]:
    """Report a missing GPU when the capture used one."""
    used = _gpus(captured)
    if not used or _gpus(host) or "nvidia" not in host:
        return []
    names = _gpu_names(used)
    nvidia = host["nvidia"]
    reason = nvidia.get("reason") or "no NVIDIA GPU was found"
    if nvidia.get("status") == "driver-not-loaded":
        advice = (
            "Load the NVIDIA kernel module (reboot after a kernel update, or reinstall "
            "the driver for the running kernel), then check with nvidia-smi."
        )
    else:
        advice = (
            f"Restore on a host with an NVIDIA GPU and driver; in a container, pass the GPUs "
            f"in (docker run --gpus all). The capture ran on {names}."
        )
    message = (
        f"the capture used {names}, but this host has no usable NVIDIA GPU: {reason}"
    )
    return [Finding(ERROR, "no-gpu", message, advice)]


def check_driver(captured: dict[str, Any], host: dict[str, Any]) -> list[Finding]:
    """Check that the driver here runs the newest CUDA runtime the capture used."""
    runtime = _value(captured, "cuda", "runtime_version")
    if not runtime or not _gpus(host):
        return []
    cuda = cuda_compat.major_minor(str(runtime))
    driver = _value(host, "nvidia", "driver_version")
    if cuda is None:
        return []
    if driver:
        return _driver_findings(
            cuda, str(driver), _source(captured, "cuda", "runtime_version")
        )
    supported = _value(host, "nvidia", "cuda_driver_version")
    if supported:
        return _supported_cuda_findings(cuda, str(supported))
    return []


def _driver_findings(cuda: str, driver: str, runtime_source: str) -> list[Finding]:
    required = cuda_compat.toolkit_min_driver(cuda)
    floor = cuda_compat.minor_compat_floor(cuda)
    newest = cuda_compat.newest_cuda_for_driver(driver)
    key = cuda_compat.version_key
    where = f"CUDA {cuda} (read from {runtime_source})"

    if required is not None and key(driver) >= key(required):
        return []
    if floor is not None and key(driver) >= key(floor):
        if required is None:
            message = (
                f"the environment uses {where}, newer than the {cuda_compat.newest_table_release()} "
                f"that goldmaster's driver table covers; driver {driver} meets the CUDA "
                f"{cuda.split('.')[0]}.x floor {floor}, so it runs at least through CUDA minor "
                "version compatibility"
            )
            advice = (
                "Check NVIDIA's release notes for the driver this CUDA release lists."
            )
            return [Finding(INFO, "driver-unlisted-cuda", message, advice)]
        message = (
            f"driver {driver} is older than {required}, which {where} lists, but not older than "
            f"{floor}: it runs through CUDA minor version compatibility, where PTX JIT "
            "compilation of newer code and some newer APIs fail"
        )
        advice = f"Upgrade the NVIDIA driver to {required} or newer for full CUDA {cuda} support."
        return [Finding(WARNING, "driver-minor-compat", message, advice)]
    if required is None and floor is None:
        message = f"no published driver minimum is known for {where}; driver {driver} is unchecked"
        advice = "Check NVIDIA's CUDA release notes for the driver this release needs."
        return [Finding(INFO, "driver-unlisted-cuda", message, advice)]

    minimum = floor or required
    message = (
        f"driver {driver} is too old for {where}, which needs driver {minimum} or newer"
    )
    advice = f"Install NVIDIA driver {required or minimum} or newer."
    if newest:
        advice += (
            f" Or rebuild the environment for CUDA {newest} or older, the newest this driver "
            f"runs (for a container, an nvidia/cuda:{newest}.* base image, and framework "
            f"wheels built for CUDA {newest} or older)."
        )
    advice += (
        " On data-center GPUs, NVIDIA's cuda-compat package (CUDA forward compatibility) "
        "can also run a newer runtime on this driver."
    )
    return [Finding(ERROR, "driver-too-old", message, advice)]


def _supported_cuda_findings(cuda: str, supported: str) -> list[Finding]:
    """Compare with the CUDA version the driver reports, when its own version is unknown."""
    key = cuda_compat.version_key
    if key(supported) >= key(cuda):
        return []
    if supported.split(".")[0] == cuda.split(".")[0] and int(cuda.split(".")[0]) >= 11:
        message = (
            f"the driver supports CUDA up to {supported}, older than the captured CUDA {cuda}; "
            "it runs through CUDA minor version compatibility, where PTX JIT compilation fails"
        )
        advice = f"Upgrade the NVIDIA driver to one that supports CUDA {cuda}."
        return [Finding(WARNING, "driver-minor-compat", message, advice)]
    message = (
        f"the driver supports CUDA up to {supported}, but the capture uses CUDA {cuda}"
    )
    advice = (
        f"Install a driver that supports CUDA {cuda}, or rebuild the environment for "
        f"CUDA {supported} or older."
    )
    return [Finding(ERROR, "driver-too-old", message, advice)]


def check_compute_capability(
    captured: dict[str, Any], host: dict[str, Any]
) -> list[Finding]:
    """Check that every GPU here runs code of the architectures the framework was compiled for."""
    arches = _value(captured, "cuda", "arch_list")
    if not arches:
        return []
    source = _source(captured, "cuda", "arch_list")
    compiled = ", ".join(arches)
    findings = []
    seen: set[str] = set()
    for gpu in _gpus(host):
        capability = gpu.get("compute_capability")
        if not capability or capability in seen:
            continue
        seen.add(capability)
        modes = {cuda_compat.arch_runs_on(arch, capability) for arch in arches}
        sm = "sm_" + capability.replace(".", "")
        if "native" in modes:
            continue
        if "jit" in modes:
            message = (
                f"GPU {gpu.get('name')} has compute capability {capability}; the captured build "
                f"({source}: {compiled}) has no {sm} binary, only PTX that the driver compiles "
                "on first use"
            )
            advice = (
                "Expect a slow first start while kernels compile; keep the compiled kernels with "
                f"CUDA_CACHE_MAXSIZE and CUDA_CACHE_PATH, or use a build that includes {sm}."
            )
            findings.append(Finding(WARNING, "gpu-arch-ptx-only", message, advice))
            continue
        message = (
            f"GPU {gpu.get('name')} has compute capability {capability}, and the captured build "
            f"({source}: {compiled}) has no code that runs on it"
        )
        advice = (
            f"Run on a GPU whose architecture is in that list, or install a framework build "
            f"compiled for {sm} (a newer release usually adds newer GPUs)."
        )
        findings.append(Finding(ERROR, "gpu-arch-unsupported", message, advice))
    return findings


def check_gpu_model(captured: dict[str, Any], host: dict[str, Any]) -> list[Finding]:
    """Report a change of GPU model or count, and less memory per GPU."""
    before, after = _gpus(captured), _gpus(host)
    if not before or not after:
        return []
    findings = []
    if _gpu_names(before) != _gpu_names(after):
        message = f"the capture ran on {_gpu_names(before)}; this host has {_gpu_names(after)}"
        advice = "Numerical results can differ slightly between GPU models; compare with the golden-output checks."
        findings.append(Finding(INFO, "gpu-model", message, advice))
    captured_memory = max((g.get("memory_total_mib") or 0 for g in before), default=0)
    host_memory = max((g.get("memory_total_mib") or 0 for g in after), default=0)
    if host_memory and captured_memory > host_memory:
        message = (
            f"the largest GPU here has {host_memory} MiB of memory; the capture had "
            f"{captured_memory} MiB per GPU"
        )
        advice = "The model may not fit: lower the batch size, or use a GPU with more memory."
        findings.append(Finding(WARNING, "gpu-memory", message, advice))
    return findings


def check_glibc(captured: dict[str, Any], host: dict[str, Any]) -> list[Finding]:
    """Check that glibc here is at least as new as the capture's, which compiled packages need."""
    before = _value(captured, "glibc", "version")
    after = _value(host, "glibc", "version")
    if not before:
        return []

    if not after:
        if host.get("glibc", {}).get("status") == "not-found":
            message = (
                f"this host's C library is not glibc; the capture ran on glibc {before}"
            )
            advice = "Restore inside the bundle's container image or on a glibc-based distribution."
            return [Finding(ERROR, "glibc-missing", message, advice)]
        return []
    key = cuda_compat.version_key
    if key(after) >= key(before):
        return []

    examples = [
        name for name, version in GLIBC_OF_DISTRIBUTIONS if key(version) >= key(before)
    ]
    message = (
        f"this host has glibc {after}, older than the capture's {before}: compiled packages "
        f'fail to load with "version `GLIBC_{before}\' not found"'
    )
    advice = (
        "Restore inside the bundle's container image, or on a host with glibc " + before
    )
    advice += " or newer" + (
        f" (for example {', '.join(examples)})." if examples else "."
    )
    return [Finding(ERROR, "glibc-older", message, advice)]


def check_cpu(captured: dict[str, Any], host: dict[str, Any]) -> list[Finding]:
    """Report another CPU architecture, or a lower x86-64 level, than the capture's."""
    before = _value(captured, "cpu", "architecture")
    after = _value(host, "cpu", "architecture")
    if before and after and before != after:
        message = f"the capture ran on {before}; this host is {after}"
        advice = (
            f"Restore on a {before} host: compiled packages, vendored wheels and the container "
            f"image are built for {before}."
        )
        return [Finding(ERROR, "cpu-architecture", message, advice)]

    level_before = _value(captured, "cpu", "x86_64_level")
    level_after = _value(host, "cpu", "x86_64_level")
    if level_before and level_after and level_after < level_before:
        message = (
            f"this CPU supports x86-64-v{level_after}; the capture host supported "
            f"x86-64-v{level_before}: code compiled for x86-64-v{level_before} stops with "
            '"Illegal instruction"'
        )
        advice = (
            f"Most wheels choose their instructions at run time and still work; if one crashes, "
            f"use a host with x86-64-v{level_before} or a build for x86-64-v{level_after}."
        )
        return [Finding(WARNING, "cpu-feature-level", message, advice)]
    return []


def check_python(captured: dict[str, Any], host: dict[str, Any]) -> list[Finding]:
    """Report another Python minor version, since wheels are built per minor version."""
    before = _minor(_value(captured, "python", "version"))
    after = _minor(_value(host, "python", "version"))
    if not before or not after or before == after:
        return []
    tag = "cp" + before.replace(".", "")
    message = (
        f"the environment was captured with Python {before}; the interpreter here is "
        f"Python {after}, and wheels built for {tag} do not install on it"
    )
    advice = (
        f"Install Python {before} (for example `uv python install {before}` or a "
        f"python:{before} image) and pass it with --python."
    )
    return [Finding(ERROR, "python-version", message, advice)]


CHECKS: tuple[Check, ...] = (
    check_gpu_present,
    check_driver,
    check_compute_capability,
    check_gpu_model,
    check_glibc,
    check_cpu,
    check_python,
)


# --- helpers -------------------------------------------------------------------


def _value(section: dict[str, Any], group: str, key: str) -> Any:
    """Return a fact's value; facts are plain values or {value, source} records."""
    found = (section.get(group) or {}).get(key)
    if isinstance(found, dict):
        return found.get("value")
    return found


def _source(section: dict[str, Any], group: str, key: str) -> str:
    found = (section.get(group) or {}).get(key)
    if isinstance(found, dict) and found.get("source"):
        return str(found["source"])
    return "the capture"


def _gpus(section: dict[str, Any]) -> list[dict[str, Any]]:
    return list((section.get("nvidia") or {}).get("gpus") or [])


def _gpu_names(gpus: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for gpu in gpus:
        name = gpu.get("name") or "an unnamed GPU"
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{count}x {name}" for name, count in sorted(counts.items()))


def _minor(version: Any) -> str | None:
    if not version:
        return None
    parts = str(version).split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else None
