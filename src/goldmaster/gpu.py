"""Record the NVIDIA driver, the GPUs and the CUDA stack, each fact with its source.

"CUDA version" names four different things, and each is recorded under its
own key: the newest CUDA version the driver supports (``cuda_driver_version``),
the version a framework was built with (``cuda_build_version``), the libcudart
the environment loads (``runtime_libraries``) and the toolkit's nvcc
(``toolkit``). Every source that fails becomes a status with a reason, so a
missing or broken driver does not fail a capture.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from goldmaster import cuda_compat, nvsmi
from goldmaster.doctor import INFO, compare_host
from goldmaster.external import CommandResult, run_command, which
from goldmaster.parts import Part, Section
from goldmaster.system import probe_host

SMI_TIMEOUT_S = 30.0
DRIVER_PROBE_TIMEOUT_S = 60.0
# Importing torch with its CUDA libraries can take a minute on a cold disk.
ENVIRONMENT_PROBE_TIMEOUT_S = 300.0
NVCC_TIMEOUT_S = 30.0
MAX_HEADER_BYTES = 64 * 1024

PROC_DRIVER_VERSION = "proc/driver/nvidia/version"
DRIVER_LIBRARIES = ("libcuda.so.1", "libnvidia-ml.so.1")
VISIBILITY_VARIABLES = (
    "CUDA_DEVICE_ORDER",
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_DRIVER_CAPABILITIES",
    "NVIDIA_REQUIRE_CUDA",
    "NVIDIA_VISIBLE_DEVICES",
)
_PROC_VERSION = re.compile(
    r"NVRM version:\s+(?P<description>.*?Kernel Module(?: for \S+)?)\s+"
    r"(?P<version>\d+\.\d+(?:\.\d+)?)"
)
_NVCC_RELEASE = re.compile(r"release (?P<release>\d+\.\d+), V(?P<version>[\d.]+)")
_LDCONFIG_LINE = re.compile(r"^\s*(?P<name>\S+) \((?P<flags>[^)]*)\) => (?P<path>\S+)")


def probe_system(
    python: Path | None, *, environ: Mapping[str, str] | None = None
) -> Section:
    """Probe this host and the CUDA stack of interpreter ``python``.

    ``python`` is the training interpreter whose environment is captured;
    None probes goldmaster's own interpreter and records that choice. The
    section's data has the keys os, kernel, glibc, cpu, memory, container,
    env, python, nvidia and cuda; its parts are the raw outputs under system/.
    """
    env = dict(os.environ if environ is None else environ)
    data, parts = probe_host(Path("/"), env)
    nvidia, nvidia_parts = probe_nvidia(env)
    cuda, cuda_parts = probe_cuda(python, env)
    data["python"] = cuda.pop("interpreter")
    data["nvidia"] = nvidia
    data["cuda"] = cuda
    parts.extend(nvidia_parts)
    parts.extend(cuda_parts)

    notices = []
    if nvidia["status"] != "ok":
        notices.append(f"no NVIDIA GPU recorded: {nvidia['reason']}")
    # The host compared with itself: a captured runtime that this driver
    # cannot run, or GPUs the framework has no code for, show up now.
    for finding in compare_host(data, data):
        if finding.severity != INFO:
            notices.append(f"{finding.code}: {finding.message}")
    return Section(
        "system", data, sorted(parts, key=lambda part: part.arcname), notices
    )


# --- the NVIDIA driver and the GPUs -------------------------------------------


def probe_nvidia(
    environ: Mapping[str, str], root: Path = Path("/")
) -> tuple[dict[str, Any], list[Part]]:
    """Record the driver, the GPUs and MIG devices from every available source."""
    parts: list[Part] = []
    smi = _probe_smi(environ, parts)
    proc = read_proc_version(root / PROC_DRIVER_VERSION, parts)
    libraries = {name: locate_library(name, environ) for name in DRIVER_LIBRARIES}
    driver = run_driver_probe(environ)

    sources: dict[str, Any] = {
        "nvidia-smi": _smi_status(smi),
        "nvml": _without(driver["nvml"], "gpus"),
        "libcuda": driver["libcuda"],
        "proc": _without(proc, "readings"),
    }
    readings = smi.get("readings", []) + proc.get("readings", [])
    readings += _library_readings(driver)

    gpus, gpus_source = _choose_gpus(smi, driver["nvml"])
    record: dict[str, Any] = {
        "driver_version": _best(readings, "driver_version"),
        "cuda_driver_version": _best(readings, "cuda_driver_version"),
        "gpu_count": len(gpus),
        "gpus": gpus,
        "gpus_source": gpus_source,
        "readings": sorted(readings, key=lambda r: (r["fact"], r["source"])),
        "sources": sources,
        "libraries": libraries,
        "visibility": {
            name: environ[name] for name in VISIBILITY_VARIABLES if name in environ
        },
    }
    record.update(_overall_status(record, smi, driver, proc, libraries))
    return record, parts


def _smi_status(smi: dict[str, Any]) -> dict[str, Any]:
    """Join the statuses of nvidia-smi's three modes and any unreadable output."""
    status = dict(smi["status"])
    for key in ("xml_status", "list_status", "query_error", "xml_error"):
        if key in smi:
            status[key] = smi[key]
    return status


def _probe_smi(environ: Mapping[str, str], parts: list[Part]) -> dict[str, Any]:
    """Run nvidia-smi's query, XML and list modes and parse what they print."""
    if which("nvidia-smi", environ) is None:
        return {
            "status": {"status": "not-found", "reason": "nvidia-smi is not on PATH"}
        }

    fields, query = _run_query(environ)
    rejected = [field for field in nvsmi.QUERY_FIELDS if field not in fields]
    parts.append(Part("system/nvidia-smi-query-gpu.csv", data=query.output.encode()))
    failure = nvsmi.driver_failure(query.output)
    if failure:
        status = query.describe() | {"status": "driver-not-loaded", "reason": failure}
        return {"status": status, "driver_failure": failure}
    if query.status == "timeout":
        # A hung driver hangs every mode, so the other two are not run.
        return {"status": query.describe()}
    if nvsmi.NO_DEVICES in query.output:
        return {"status": query.describe() | {"status": "no-devices"}, "query": []}

    result: dict[str, Any] = {"status": query.describe(), "readings": []}
    if rejected:
        result["status"]["rejected_fields"] = rejected
    if query.ok:
        _parse_into(
            result, "query", lambda: nvsmi.parse_query_csv(query.stdout, fields)
        )
        for gpu in result.get("query", [])[:1]:
            result["readings"].append(
                _reading(
                    "driver_version", gpu["driver_version"], "nvidia-smi --query-gpu"
                )
            )

    xml = run_command(
        ["nvidia-smi", "-q", "-x"], timeout=SMI_TIMEOUT_S, environ=environ
    )
    result["xml_status"] = xml.describe()
    if xml.ok:
        _parse_into(result, "xml", lambda: nvsmi.parse_smi_xml(xml.stdout))
        _parse_into(
            result,
            "xml_part",
            lambda: Part(
                "system/nvidia-smi-q.xml", data=nvsmi.stable_smi_xml(xml.stdout)
            ),
        )
    if "xml_part" in result:
        parts.append(result.pop("xml_part"))
    if "xml" in result:
        for fact in ("driver_version", "cuda_driver_version"):
            result["readings"].append(
                _reading(fact, result["xml"][fact], "nvidia-smi -q -x")
            )

    listing = run_command(["nvidia-smi", "-L"], timeout=SMI_TIMEOUT_S, environ=environ)
    result["list_status"] = listing.describe()
    if listing.ok:
        parts.append(Part("system/nvidia-smi-L.txt", data=listing.stdout.encode()))
        result["list"] = nvsmi.parse_smi_list(listing.stdout)
    return result


def _run_query(environ: Mapping[str, str]) -> tuple[tuple[str, ...], CommandResult]:
    """Run ``--query-gpu``, dropping fields that an older nvidia-smi rejects."""
    fields: tuple[str, ...] = nvsmi.QUERY_FIELDS
    for _ in range(3):
        query = run_command(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"],
            timeout=SMI_TIMEOUT_S,
            environ=environ,
        )
        rejected = set(nvsmi.invalid_fields(query.output))
        if query.ok or not rejected or not rejected & set(fields):
            return fields, query
        fields = tuple(field for field in fields if field not in rejected)
    return fields, query


def _parse_into(result: dict[str, Any], key: str, parse: Any) -> None:
    """Store ``parse()`` under ``key``, or its failure under ``key + '_error'``."""
    try:
        result[key] = parse()
    except (ValueError, SyntaxError) as exc:  # ET.ParseError is a SyntaxError
        result[f"{key}_error"] = f"unreadable nvidia-smi output: {exc}"


def _choose_gpus(
    smi: dict[str, Any], nvml: dict[str, Any]
) -> tuple[list[dict[str, Any]], str | None]:
    """Take GPUs from nvidia-smi when it printed any, else from NVML."""
    if smi.get("query") or smi.get("xml", {}).get("gpus"):
        gpus = merge_smi_gpus(smi.get("query", []), smi.get("xml"), smi.get("list"))
        _fill_capability_from_nvml(gpus, nvml.get("gpus", []))
        return gpus, "nvidia-smi" if smi.get("query") else "nvidia-smi -q -x"
    if nvml.get("gpus"):
        return [_nvml_gpu(gpu) for gpu in nvml["gpus"]], "NVML"
    return [], None


def _fill_capability_from_nvml(
    gpus: list[dict[str, Any]], nvml_gpus: list[dict[str, Any]]
) -> None:
    """Take compute capabilities from NVML where nvidia-smi is too old to print them."""
    by_uuid = {gpu.get("uuid"): gpu for gpu in nvml_gpus}
    for gpu in gpus:
        capability = by_uuid.get(gpu.get("uuid"), {}).get("compute_capability")
        if gpu.get("compute_capability") is None and isinstance(capability, str):
            gpu["compute_capability"] = capability
            gpu["compute_capability_source"] = "NVML"


def merge_smi_gpus(
    query: list[dict[str, Any]],
    xml: dict[str, Any] | None,
    listing: list[dict[str, Any]] | None,
) -> list[dict[str, Any]]:
    """Join the three nvidia-smi views of the GPUs by index and PCI bus id."""
    xml_gpus = (xml or {}).get("gpus", [])
    if not query:
        query = [
            {"index": index}
            | _pick(gpu, "name", "uuid", "pci_bus_id", "memory_total_mib")
            | {"mig_mode_current": gpu.get("mig_mode_current")}
            for index, gpu in enumerate(xml_gpus)
        ]
    by_bus = {_bus_key(gpu.get("pci_bus_id")): gpu for gpu in xml_gpus}
    by_index = {gpu["index"]: gpu for gpu in listing or []}

    gpus = []
    for row in query:
        gpu = _pick(row, "index", "name", "uuid", "pci_bus_id", "memory_total_mib")
        gpu["compute_capability"] = row.get("compute_capability")
        xml_gpu = by_bus.get(_bus_key(row.get("pci_bus_id")), {})
        if xml_gpu.get("architecture"):
            gpu["architecture"] = xml_gpu["architecture"]
        gpu["mig_mode"] = {
            "current": row.get("mig_mode_current") or xml_gpu.get("mig_mode_current"),
            "pending": row.get("mig_mode_pending") or xml_gpu.get("mig_mode_pending"),
        }
        mig_devices = _merge_mig(
            xml_gpu.get("mig_devices", []), by_index.get(gpu["index"])
        )
        if mig_devices:
            gpu["mig_devices"] = mig_devices
        gpu["source"] = "nvidia-smi"
        gpus.append(gpu)
    return gpus


def _merge_mig(
    xml_devices: list[dict[str, Any]], listed: dict[str, Any] | None
) -> list[dict[str, Any]]:
    listed_devices = {
        mig["index"]: mig for mig in (listed or {}).get("mig_devices", [])
    }
    merged = []
    for index in sorted({d["index"] for d in xml_devices} | set(listed_devices)):
        entry = {"index": index}
        entry |= next((d for d in xml_devices if d["index"] == index), {})
        entry |= _pick(listed_devices.get(index, {}), "profile", "uuid")
        merged.append(entry)
    return merged


def _nvml_gpu(gpu: dict[str, Any]) -> dict[str, Any]:
    record = _pick(
        gpu,
        "index",
        "name",
        "uuid",
        "pci_bus_id",
        "memory_total_mib",
        "compute_capability",
    )
    if isinstance(gpu.get("mig_mode"), dict):
        record["mig_mode"] = gpu["mig_mode"]
    if gpu.get("mig_devices"):
        record["mig_devices"] = gpu["mig_devices"]
    record["source"] = "NVML"
    return record


def _overall_status(
    record: dict[str, Any],
    smi: dict[str, Any],
    driver: dict[str, Any],
    proc: dict[str, Any],
    libraries: dict[str, Any],
) -> dict[str, str]:
    """Summarise the sources into one status and a reason a person can act on."""
    if record["gpus"]:
        return {"status": "ok"}
    if smi.get("driver_failure"):
        return {
            "status": "driver-not-loaded",
            "reason": f"nvidia-smi: {smi['driver_failure']}",
        }
    if "query" in smi and not smi["query"]:
        return {"status": "no-gpu", "reason": "the NVIDIA driver reports no GPUs"}

    reasons = [smi["status"].get("reason") or "nvidia-smi printed no GPUs"]
    reasons.append(driver["nvml"].get("reason") or "NVML listed no GPUs")
    reasons.append(
        proc.get("reason") or "the kernel module is loaded but no GPU answered"
    )
    for name, found in sorted(libraries.items()):
        if found["status"] == "dangling":
            reasons.append(f"{name} is a dangling link to {found['target']}")
    found_driver = proc.get("status") == "ok" or driver["libcuda"].get("status") == "ok"
    status = "no-gpu" if found_driver else "not-found"
    return {"status": status, "reason": "; ".join(reasons)}


def read_proc_version(path: Path, parts: list[Part]) -> dict[str, Any]:
    """Read the kernel module's version from /proc/driver/nvidia/version."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        reason = f"{path} does not exist: the NVIDIA kernel module is not loaded"
        return {"status": "not-found", "reason": reason}
    except OSError as exc:
        return {"status": "not-readable", "reason": f"{path}: {exc.strerror or exc}"}

    parts.append(Part("system/proc-driver-nvidia-version.txt", data=raw))
    text = raw.decode("utf-8", errors="replace")
    match = _PROC_VERSION.search(text)
    if match is None:
        return {"status": "unreadable", "reason": f"{path} has no NVRM version line"}
    source = "/proc/driver/nvidia/version"
    return {
        "status": "ok",
        "kernel_module": match.group("description"),
        "open_kernel_module": "Open Kernel Module" in match.group("description"),
        "readings": [_reading("driver_version", match.group("version"), source)],
    }


def locate_library(name: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Find shared library ``name`` the way the dynamic loader would, and check its link.

    Searches LD_LIBRARY_PATH first, then the ldconfig cache. A symbolic link
    whose target is missing (a half-removed driver) is reported as
    ``dangling`` with its target, since loading it fails with a vague message.
    """
    for directory in environ.get("LD_LIBRARY_PATH", "").split(":"):
        if directory and os.path.lexists(os.path.join(directory, name)):
            return _link_status(Path(directory) / name, "LD_LIBRARY_PATH")

    cache = run_command(["ldconfig", "-p"], timeout=10.0, environ=environ)
    if (
        not cache.ok
        and which("ldconfig", environ) is None
        and os.path.exists("/sbin/ldconfig")
    ):
        cache = run_command(["/sbin/ldconfig", "-p"], timeout=10.0, environ=environ)
    for line in cache.stdout.splitlines():
        match = _LDCONFIG_LINE.match(line)
        if match and match.group("name") == name:
            return _link_status(Path(match.group("path")), "ldconfig -p")
    reason = f"{name} is neither in LD_LIBRARY_PATH nor in the ldconfig cache"
    return {"status": "not-found", "reason": reason}


def _link_status(path: Path, source: str) -> dict[str, Any]:
    record: dict[str, Any] = {"path": str(path), "source": source}
    if path.exists():
        return record | {"status": "found", "resolved": str(path.resolve())}
    target = os.readlink(path) if path.is_symlink() else None
    return record | {"status": "dangling", "target": target}


def run_driver_probe(environ: Mapping[str, str]) -> dict[str, Any]:
    """Run the NVML and libcuda queries in a child of this interpreter."""
    source = Path(__file__).with_name("_driver_probe.py").read_text(encoding="utf-8")
    result = run_command(
        [sys.executable, "-c", source], timeout=DRIVER_PROBE_TIMEOUT_S, environ=environ
    )
    if result.ok:
        try:
            report = json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            failure = {
                "status": "failed",
                "reason": f"unreadable driver probe output: {exc}",
            }
            return {"nvml": failure, "libcuda": failure}
        return {"nvml": report["nvml"], "libcuda": report["libcuda"]}
    reason = result.reason or "the driver probe failed"
    if result.returncode is not None and result.returncode < 0:
        reason = f"a driver library crashed the probe (signal {-result.returncode})"
    failure = {"status": "failed", "reason": reason}
    return {"nvml": failure, "libcuda": failure}


def _library_readings(driver: dict[str, Any]) -> list[dict[str, Any]]:
    readings = []
    nvml = driver["nvml"]
    if nvml.get("status") == "ok":
        for fact in ("driver_version", "cuda_driver_version"):
            if nvml.get(fact):
                readings.append(_reading(fact, nvml[fact], "NVML"))
    libcuda = driver["libcuda"]
    if libcuda.get("status") == "ok":
        readings.append(
            _reading(
                "cuda_driver_version", libcuda["cuda_driver_version"], libcuda["source"]
            )
        )
    return readings


# Sources of a fact in order of preference. The library an application loads
# comes first, because a forward-compatibility libcuda in a container can differ
# from the host's kernel module.
_SOURCE_PRIORITY = (
    "cuDriverGetVersion() in libcuda.so.1",
    "NVML",
    "nvidia-smi --query-gpu",
    "nvidia-smi -q -x",
    "/proc/driver/nvidia/version",
)


def _best(readings: list[dict[str, Any]], fact: str) -> dict[str, Any] | None:
    candidates = [r for r in readings if r["fact"] == fact and r["value"]]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: _SOURCE_PRIORITY.index(r["source"]))
    return {"value": best["value"], "source": best["source"]}


def _reading(fact: str, value: Any, source: str) -> dict[str, Any]:
    return {"fact": fact, "value": value, "source": source}


# --- the CUDA stack of the captured environment -------------------------------


def probe_cuda(
    python: Path | None, environ: Mapping[str, str]
) -> tuple[dict[str, Any], list[Part]]:
    """Record the CUDA libraries of interpreter ``python`` and the system toolkit."""
    parts: list[Part] = []
    interpreter, report = run_environment_probe(python, environ)
    if report is not None:
        raw = json.dumps(report, sort_keys=True, indent=1).encode()
        parts.append(Part("system/python-cuda-probe.json", data=raw))
        report.pop("report_version", None)

    record: dict[str, Any] = {"interpreter": interpreter}
    if report is not None:
        interpreter.update(report.pop("python"))
        record.update(report)
    record["toolkit"] = probe_toolkit(environ, parts)
    record["runtime_version"] = runtime_version(record)
    record["arch_list"] = arch_list(record)
    return record, parts


def run_environment_probe(
    python: Path | None, environ: Mapping[str, str], *, allow_import: bool = True
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Run the standard-library probe inside ``python`` and load its report."""
    executable = str(python) if python is not None else sys.executable
    interpreter: dict[str, Any] = {
        "requested": executable,
        "chosen_by": "--python"
        if python is not None
        else "goldmaster's own interpreter",
    }
    source = Path(__file__).with_name("_cuda_probe.py").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="goldmaster-probe-") as workdir:
        report_path = Path(workdir) / "report.json"
        argv = [executable, "-c", source, str(report_path)]
        if not allow_import:
            argv.append("--no-import")
        # The probe runs in an empty folder so that no module in the current
        # directory shadows the standard library in the target interpreter.
        result = run_command(
            argv,
            timeout=ENVIRONMENT_PROBE_TIMEOUT_S,
            environ=environ,
            cwd=Path(workdir),
        )
        report = _load_report(report_path)

    if result.ok and report is not None:
        interpreter["status"] = "ok"
    elif report is not None:
        interpreter.update(status="partial", reason=_probe_failure(result))
    else:
        interpreter.update(status="failed", reason=_probe_failure(result))
    return interpreter, report


def _load_report(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _probe_failure(result: CommandResult) -> str:
    if result.returncode is not None and result.returncode < 0:
        return f"the interpreter crashed while probing (signal {-result.returncode})"
    return result.reason or "the probe wrote no report"


def probe_toolkit(environ: Mapping[str, str], parts: list[Part]) -> dict[str, Any]:
    """Record the system CUDA toolkit: nvcc, version.json, headers and cuDNN's header."""
    home, chosen_by = _toolkit_home(environ)
    record: dict[str, Any] = {"home": str(home), "home_chosen_by": chosen_by}
    if not home.is_dir():
        record.update(status="not-found", reason=f"{home} is not a folder")
    else:
        record["status"] = "found"
        record["home_resolved"] = str(home.resolve())
        record.update(_toolkit_version_files(home, parts))
        record["headers"] = toolkit_header_versions(home / "include")

    record["nvcc"] = _nvcc_version(home, environ, parts)
    record["cudnn_header"] = find_cudnn_header(home, parts)
    return record


def _toolkit_home(environ: Mapping[str, str]) -> tuple[Path, str]:
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(variable):
            return Path(environ[variable]), variable
    return Path("/usr/local/cuda"), "default /usr/local/cuda"


def _toolkit_version_files(home: Path, parts: list[Part]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    version_json = home / "version.json"
    try:
        raw = version_json.read_bytes()
        manifest = json.loads(raw)
    except FileNotFoundError:
        found["version_json"] = {"status": "not-found", "reason": f"no {version_json}"}
    except (OSError, ValueError) as exc:
        found["version_json"] = {
            "status": "unreadable",
            "reason": f"{version_json}: {exc}",
        }
    else:
        parts.append(Part("system/cuda-version.json", data=raw))
        found["version_json"] = {
            "version": manifest.get("cuda", {}).get("version"),
            "components": {
                key: value.get("version")
                for key, value in sorted(manifest.items())
                if isinstance(value, dict) and key != "cuda"
            },
            "source": str(version_json),
        }

    version_txt = home / "version.txt"  # toolkits before CUDA 11.1
    if version_txt.is_file():
        text = version_txt.read_text(encoding="utf-8", errors="replace").strip()
        found["version_txt"] = {"text": text, "source": str(version_txt)}
    return found


def toolkit_header_versions(include: Path) -> dict[str, Any]:
    """Read CUDA_VERSION from cuda.h and CUDART_VERSION from cuda_runtime_api.h."""
    headers: dict[str, Any] = {}
    for header, macro, key in (
        ("cuda.h", "CUDA_VERSION", "cuda_h"),
        ("cuda_runtime_api.h", "CUDART_VERSION", "cuda_runtime_api_h"),
    ):
        path = include / header
        code = _define(path, macro)
        if code is not None:
            headers[key] = {
                "version": cuda_compat.major_minor(str(code)),
                "code": code,
                "source": f"{macro} in {path}",
            }
    return headers


def _define(path: Path, macro: str) -> int | None:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                match = re.match(rf"\s*#\s*define\s+{macro}\s+(\d+)", line)
                if match:
                    return int(match.group(1))
    except OSError:
        return None
    return None


def _nvcc_version(
    home: Path, environ: Mapping[str, str], parts: list[Part]
) -> dict[str, Any]:
    nvcc = home / "bin" / "nvcc"
    command = str(nvcc) if nvcc.exists() else "nvcc"
    result = run_command(
        [command, "--version"], timeout=NVCC_TIMEOUT_S, environ=environ
    )
    record = result.describe()
    if not result.ok:
        return record
    parts.append(Part("system/nvcc-version.txt", data=result.stdout.encode()))
    match = _NVCC_RELEASE.search(result.stdout)
    if match:
        record.update(release=match.group("release"), version=match.group("version"))
    record["path"] = command if os.sep in command else which(command, environ)
    return record


def find_cudnn_header(home: Path, parts: list[Part]) -> dict[str, Any]:
    """Read the cuDNN version from cudnn_version.h (cuDNN 8 and newer) or cudnn.h."""
    machine = os.uname().machine
    folders = [
        home / "include",
        Path("/usr/include"),
        Path(f"/usr/include/{machine}-linux-gnu"),
    ]
    for folder in folders:
        for name in ("cudnn_version.h", "cudnn.h"):
            path = folder / name
            version = cudnn_header_version(path)
            if version is not None:
                raw = path.read_bytes()[:MAX_HEADER_BYTES]
                parts.append(Part(f"system/{name}", data=raw))
                return {"version": version, "source": str(path)}
    searched = ", ".join(str(folder) for folder in folders)
    return {"status": "not-found", "reason": f"no cuDNN header in {searched}"}


def cudnn_header_version(path: Path) -> str | None:
    """Return MAJOR.MINOR.PATCHLEVEL from a cuDNN header, or None."""
    numbers = [
        _define(path, macro)
        for macro in ("CUDNN_MAJOR", "CUDNN_MINOR", "CUDNN_PATCHLEVEL")
    ]
    if any(number is None for number in numbers):
        return None
    return ".".join(str(number) for number in numbers)


def runtime_version(cuda: dict[str, Any]) -> dict[str, Any] | None:
    """Return the newest CUDA runtime the environment uses, with its source.

    The driver must support every runtime an environment loads, so the newest
    one decides. Candidates are the frameworks' build versions and the
    libcudart libraries found in the installed distributions.
    """
    candidates = runtime_candidates(cuda)
    if not candidates:
        return None
    best = max(candidates, key=lambda c: cuda_compat.version_key(c["value"]))
    return {"value": best["value"], "source": best["source"], "candidates": candidates}


def runtime_candidates(cuda: dict[str, Any]) -> list[dict[str, str]]:
    """List every X.Y CUDA runtime version the probe found, with its source."""
    candidates = []
    frameworks = cuda.get("frameworks", {})
    torch_build = frameworks.get("torch", {}).get("cuda_build_version", {})
    if torch_build.get("value"):
        candidates.append(
            {"value": torch_build["value"], "source": torch_build["source"]}
        )
    tensorflow = frameworks.get("tensorflow", {}).get("build_info", {})
    if tensorflow.get("is_cuda_build") and tensorflow.get("cuda_version"):
        candidates.append(
            {"value": str(tensorflow["cuda_version"]), "source": tensorflow["source"]}
        )
    cupy = frameworks.get("cupy", {}).get("cuda_build_version", {})
    if cupy.get("value") and not str(cupy["value"]).endswith(".x"):
        candidates.append({"value": cupy["value"], "source": cupy["source"]})
    for library in cuda.get("cuda_runtime_libraries", []):
        if library.get("version"):
            source = f"{library['source']} in {library['path']}"
            candidates.append({"value": library["version"], "source": source})

    unique = {(c["value"], c["source"]): c for c in candidates}
    return [unique[key] for key in sorted(unique)]


def arch_list(cuda: dict[str, Any]) -> dict[str, Any] | None:
    """Return the GPU architectures the environment's framework was compiled for."""
    torch = cuda.get("frameworks", {}).get("torch", {}).get("arch_list", {})
    if torch.get("value"):
        return {"value": torch["value"], "source": torch["source"]}
    tensorflow = cuda.get("frameworks", {}).get("tensorflow", {}).get("build_info", {})
    if tensorflow.get("cuda_compute_capabilities"):
        return {
            "value": sorted(tensorflow["cuda_compute_capabilities"]),
            "source": tensorflow["source"],
        }
    return None


def _pick(record: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: record[key] for key in keys if key in record}


def _without(record: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key not in keys}


def _bus_key(bus_id: str | None) -> str:
    """Normalise a PCI bus id: nvidia-smi prints 8 domain digits, NVML 4 or 8."""
    fields = (bus_id or "").lower().split(":")
    if len(fields) != 3:
        return (bus_id or "").lower()
    return f"{int(fields[0], 16):08x}:{fields[1]}:{fields[2]}"
