"""Minimum NVIDIA drivers per CUDA release, and the GPUs a CUDA build runs on.

Source of the driver tables: NVIDIA, "CUDA Toolkit 13.2 Update 2 Release Notes",
section 2.2 "CUDA Driver", Table 2 ("CUDA Toolkit and Minimum Required Driver
Version for CUDA Minor Version Compatibility") and Table 3 ("CUDA Toolkit and
Corresponding Driver Versions"), Linux x86_64 column,
https://docs.nvidia.com/cuda/archive/13.2.2/cuda-toolkit-release-notes/index.html,
read on 2026-12-04. NVIDIA publishes the same Linux minimums for arm64-sbsa.
"""

from __future__ import annotations

import re

TABLE_SOURCE = (
    "NVIDIA CUDA Toolkit 13.2 Update 2 release notes, Tables 2 and 3 "
    "(Linux x86_64), read 2026-12-04"
)

# (CUDA release, release label, minimum Linux x86_64 driver) from Table 3,
# newest first. Release candidates are left out.
TOOLKIT_DRIVERS: tuple[tuple[str, str, str], ...] = (
    ("13.2", "13.2 Update 2", "595.71.05"),
    ("13.2", "13.2 Update 1", "595.58.03"),
    ("13.2", "13.2 GA", "595.45.04"),
    ("13.1", "13.1 Update 1", "590.48.01"),
    ("13.1", "13.1 GA", "590.44.01"),
    ("13.0", "13.0 Update 2", "580.95.05"),
    ("13.0", "13.0 Update 1", "580.82.07"),
    ("13.0", "13.0 GA", "580.65.06"),
    ("12.9", "12.9 Update 1", "575.57.08"),
    ("12.9", "12.9 GA", "575.51.03"),
    ("12.8", "12.8 Update 1", "570.124.06"),
    ("12.8", "12.8 GA", "570.26"),
    ("12.6", "12.6 Update 3", "560.35.05"),
    ("12.6", "12.6 Update 2", "560.35.03"),
    ("12.6", "12.6 Update 1", "560.35.03"),
    ("12.6", "12.6 GA", "560.28.03"),
    ("12.5", "12.5 Update 1", "555.42.06"),
    ("12.5", "12.5 GA", "555.42.02"),
    ("12.4", "12.4 Update 1", "550.54.15"),
    ("12.4", "12.4 GA", "550.54.14"),
    ("12.3", "12.3 Update 1", "545.23.08"),
    ("12.3", "12.3 GA", "545.23.06"),
    ("12.2", "12.2 Update 2", "535.104.05"),
    ("12.2", "12.2 Update 1", "535.86.09"),
    ("12.2", "12.2 GA", "535.54.03"),
    ("12.1", "12.1 Update 1", "530.30.02"),
    ("12.1", "12.1 GA", "530.30.02"),
    ("12.0", "12.0 Update 1", "525.85.12"),
    ("12.0", "12.0 GA", "525.60.13"),
    ("11.8", "11.8 GA", "520.61.05"),
    ("11.7", "11.7 Update 1", "515.48.07"),
    ("11.7", "11.7 GA", "515.43.04"),
    ("11.6", "11.6 Update 2", "510.47.03"),
    ("11.6", "11.6 Update 1", "510.47.03"),
    ("11.6", "11.6 GA", "510.39.01"),
    ("11.5", "11.5 Update 2", "495.29.05"),
    ("11.5", "11.5 Update 1", "495.29.05"),
    ("11.5", "11.5 GA", "495.29.05"),
    ("11.4", "11.4 Update 4", "470.82.01"),
    ("11.4", "11.4 Update 3", "470.82.01"),
    ("11.4", "11.4 Update 2", "470.57.02"),
    ("11.4", "11.4 Update 1", "470.57.02"),
    ("11.4", "11.4 GA", "470.42.01"),
    ("11.3", "11.3 Update 1", "465.19.01"),
    ("11.3", "11.3 GA", "465.19.01"),
    ("11.2", "11.2 Update 2", "460.32.03"),
    ("11.2", "11.2 Update 1", "460.32.03"),
    ("11.2", "11.2 GA", "460.27.03"),
    ("11.1", "11.1 Update 1", "455.32"),
    ("11.1", "11.1 GA", "455.23"),
    ("11.0", "11.0 Update 1", "450.51.06"),
    ("11.0", "11.0 GA", "450.51.05"),
    ("10.2", "10.2.89", "440.33"),
    ("10.1", "10.1.105 and updates", "418.39"),
    ("10.0", "10.0.130", "410.48"),
    ("9.2", "9.2.148 Update 1", "396.37"),
    ("9.2", "9.2.88", "396.26"),
    ("9.1", "9.1.85", "390.46"),
    ("9.0", "9.0.76", "384.81"),
    ("8.0", "8.0.61 GA2", "375.26"),
    ("8.0", "8.0.44", "367.48"),
    ("7.5", "7.5.16", "352.31"),
    ("7.0", "7.0.28", "346.46"),
)

# Minor version compatibility (Table 2): from CUDA 11 on, a runtime of major
# version M runs, with a limited feature set, on any driver at or above the
# floor of M. Table 2 prints ">= 580", ">= 525" and ">= 450". The exact floors
# used here are the first driver of each major (13.0 GA, 12.0 GA), and for 11.x
# the 450.80.02 driver that a footnote of the release notes names.
MINOR_COMPAT_FLOORS: dict[int, str] = {
    13: "580.65.06",
    12: "525.60.13",
    11: "450.80.02",
}


def version_key(version: str) -> tuple[int, ...]:
    """Turn a dotted version such as 535.104.05 into a comparable tuple."""
    return tuple(int(part) for part in re.findall(r"\d+", version))


def major_minor(version: str) -> str | None:
    """Return X.Y of a CUDA version such as 12.4, 12.4.127 or 12040."""
    numbers = re.findall(r"\d+", version)
    if len(numbers) == 1 and len(numbers[0]) >= 4:
        code = int(numbers[0])
        return f"{code // 1000}.{(code % 1000) // 10}"
    if len(numbers) >= 2:
        return f"{int(numbers[0])}.{int(numbers[1])}"
    return None


def toolkit_min_driver(cuda: str) -> str | None:
    """Return the lowest driver that Table 3 lists for CUDA release X.Y."""
    release = major_minor(cuda)
    drivers = [driver for version, _, driver in TOOLKIT_DRIVERS if version == release]
    return min(drivers, key=version_key) if drivers else None


def minor_compat_floor(cuda: str) -> str | None:
    """Return the lowest driver that runs CUDA ``cuda`` through minor version compatibility."""
    release = major_minor(cuda)
    if release is None:
        return None
    return MINOR_COMPAT_FLOORS.get(int(release.split(".")[0]))


def newest_cuda_for_driver(driver: str) -> str | None:
    """Return the newest CUDA release in Table 3 whose minimum driver is ``driver`` or older."""
    supported = [
        version
        for version, _, minimum in TOOLKIT_DRIVERS
        if version_key(minimum) <= version_key(driver)
    ]
    return max(supported, key=version_key) if supported else None


def newest_table_release() -> str:
    """Return the newest CUDA release the table covers."""
    return max((version for version, _, _ in TOOLKIT_DRIVERS), key=version_key)


def arch_runs_on(arch: str, capability: str) -> str | None:
    """Tell how code compiled for ``arch`` runs on a GPU of compute ``capability``.

    Returns ``"native"`` for a binary (cubin) the GPU runs as it is, ``"jit"``
    for PTX that the driver compiles on first use, or None when ``arch`` cannot
    run there. The rules are CUDA's: an ``sm_XY`` binary runs on compute
    capability X.Z for Z >= Y; ``sm_XYa`` only on exactly X.Y; family-specific
    ``sm_XYf`` on X.Z for Z >= Y; ``compute_XY`` PTX on any capability >= X.Y.
    """
    match = re.fullmatch(r"(sm|compute)_(\d+?)(\d)([af]?)", arch.strip().lower())
    gpu = re.fullmatch(r"(\d+)\.(\d+)", capability.strip())
    if match is None or gpu is None:
        return None
    kind, major, minor, suffix = (
        match.group(1),
        int(match.group(2)),
        int(match.group(3)),
        match.group(4),
    )
    gpu_major, gpu_minor = int(gpu.group(1)), int(gpu.group(2))

    if kind == "compute":
        if suffix:
            return "jit" if (gpu_major, gpu_minor) == (major, minor) else None
        return "jit" if (gpu_major, gpu_minor) >= (major, minor) else None
    if suffix == "a":
        return "native" if (gpu_major, gpu_minor) == (major, minor) else None
    return "native" if gpu_major == major and gpu_minor >= minor else None
