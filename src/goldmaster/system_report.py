"""Turn a ``system`` section into labelled rows for ``inspect`` and ``doctor``.

Each row is a label and a text; a value that was not recorded is None, so the
page leaves the row out. Facts read from a named source show it in parentheses.
"""

from __future__ import annotations

from typing import Any

Row = tuple[str, str | None]


def system_rows(system: dict[str, Any]) -> list[Row]:
    """Describe the host: OS, kernel, glibc, CPU, memory, container, Python."""
    os_release = system.get("os") or {}
    kernel = system.get("kernel") or {}
    glibc = system.get("glibc") or {}
    python = system.get("python") or {}
    return [
        ("OS", os_release.get("pretty_name") or os_release.get("reason")),
        ("kernel", kernel.get("release")),
        ("glibc", glibc.get("version") or glibc.get("reason")),
        ("CPU", _cpu(system.get("cpu") or {})),
        ("memory", _gib((system.get("memory") or {}).get("total_bytes"))),
        ("container", _container(system.get("container") or {})),
        ("Python", _python(python)),
    ]


def gpu_rows(system: dict[str, Any]) -> list[Row]:
    """Describe the NVIDIA driver, every GPU and its MIG devices."""
    nvidia = system.get("nvidia") or {}
    if not nvidia:
        return []
    rows: list[Row] = []
    if nvidia.get("status") != "ok":
        rows.append(("NVIDIA", f"{nvidia.get('status')}: {nvidia.get('reason')}"))
    rows.append(("driver", _fact(nvidia.get("driver_version"))))
    rows.append(("driver supports CUDA", _fact(nvidia.get("cuda_driver_version"))))
    for gpu in nvidia.get("gpus") or []:
        rows.append((f"GPU {gpu.get('index')}", _gpu(gpu)))
        for mig in gpu.get("mig_devices") or []:
            rows.append((f"  MIG {mig.get('index')}", _mig(mig)))
    for name, value in sorted((nvidia.get("visibility") or {}).items()):
        rows.append((name, value))
    return rows


def cuda_rows(system: dict[str, Any]) -> list[Row]:
    """Describe the CUDA stack: runtime, frameworks, NVIDIA wheels and toolkit."""
    cuda = system.get("cuda") or {}
    if not cuda:
        return []
    rows: list[Row] = [("CUDA runtime", _fact(cuda.get("runtime_version")))]
    frameworks = cuda.get("frameworks") or {}
    if "torch" in frameworks:
        rows.append(("torch", _torch(frameworks["torch"])))
    if "tensorflow" in frameworks:
        rows.append(("tensorflow", _tensorflow(frameworks["tensorflow"])))
    if "jax" in frameworks:
        rows.append(("jax", _jax(frameworks["jax"])))
    if "cupy" in frameworks:
        cupy = frameworks["cupy"]
        built = (cupy.get("cuda_build_version") or {}).get("value")
        rows.append(
            ("cupy", _join(cupy.get("version"), built and f"built for CUDA {built}"))
        )
    wheels = [f"{w['name']} {w['version']}" for w in cuda.get("nvidia_wheels") or []]
    rows.append(("NVIDIA wheels", ", ".join(wheels) or None))
    rows.append(("toolkit", _toolkit(cuda.get("toolkit") or {})))
    cudnn = (cuda.get("toolkit") or {}).get("cudnn_header") or {}
    if cudnn.get("version"):
        rows.append(("cuDNN header", f"{cudnn['version']} ({cudnn.get('source')})"))
    return rows


def _fact(fact: Any) -> str | None:
    if not isinstance(fact, dict) or fact.get("value") in (None, ""):
        return None
    return f"{fact['value']} ({fact.get('source')})"


def _cpu(cpu: dict[str, Any]) -> str | None:
    details = [cpu.get("architecture")]
    if cpu.get("x86_64_level"):
        details.append(f"x86-64-v{cpu['x86_64_level']}")
    if cpu.get("logical_cpus"):
        details.append(f"{cpu['logical_cpus']} logical CPUs")
    described = ", ".join(str(d) for d in details if d)
    if cpu.get("model") and described:
        return f"{cpu['model']} ({described})"
    return cpu.get("model") or described or None


def _gib(count: Any) -> str | None:
    return f"{count / 2**30:.1f} GiB" if isinstance(count, int) else None


def _container(container: dict[str, Any]) -> str | None:
    if not container:
        return None
    return ", ".join(container.get("kinds") or []) or "none detected"


def _python(python: dict[str, Any]) -> str | None:
    if python.get("version"):
        return f"{python['version']} ({python.get('executable')})"
    return python.get("reason")


def _gpu(gpu: dict[str, Any]) -> str:
    parts = [gpu.get("name")]
    if gpu.get("memory_total_mib"):
        parts.append(f"{gpu['memory_total_mib']} MiB")
    if gpu.get("compute_capability"):
        parts.append(f"compute capability {gpu['compute_capability']}")
    parts.append(gpu.get("pci_bus_id"))
    mig_mode = (gpu.get("mig_mode") or {}).get("current")
    if mig_mode == "Enabled":
        parts.append("MIG enabled")
    parts.append(gpu.get("uuid"))
    return ", ".join(str(part) for part in parts if part)


def _mig(mig: dict[str, Any]) -> str:
    parts = [mig.get("profile"), mig.get("uuid")]
    if mig.get("gpu_instance_id") is not None:
        parts.append(f"GPU instance {mig['gpu_instance_id']}")
    if mig.get("memory_total_mib"):
        parts.append(f"{mig['memory_total_mib']} MiB")
    return ", ".join(str(part) for part in parts if part)


def _torch(torch: dict[str, Any]) -> str:
    built = (torch.get("cuda_build_version") or {}).get("value")
    arches = (torch.get("arch_list") or {}).get("value")
    cudnn = (torch.get("cudnn_version") or {}).get("value")
    nccl = (torch.get("nccl_version") or {}).get("value")
    return _join(
        torch.get("version"),
        built and f"built for CUDA {built}",
        arches and f"arches {' '.join(arches)}",
        cudnn and f"cuDNN {cudnn}",
        nccl and f"NCCL {nccl}",
    ) or str(torch.get("version"))


def _tensorflow(tensorflow: dict[str, Any]) -> str:
    info = tensorflow.get("build_info") or {}
    built = info.get("cuda_version") if info.get("is_cuda_build") else None
    return _join(
        tensorflow.get("version"),
        built and f"built for CUDA {built}",
        info.get("cudnn_version") and f"cuDNN {info['cudnn_version']}",
    ) or str(tensorflow.get("version"))


def _jax(jax: dict[str, Any]) -> str:
    plugins = [f"{p['name']} {p['version']}" for p in jax.get("cuda_plugins") or []]
    return (
        _join(jax.get("jax"), jax.get("jaxlib") and f"jaxlib {jax['jaxlib']}", *plugins)
        or "-"
    )


def _toolkit(toolkit: dict[str, Any]) -> str | None:
    nvcc = toolkit.get("nvcc") or {}
    if nvcc.get("version"):
        return f"nvcc {nvcc['version']} ({nvcc.get('path')})"
    if toolkit.get("status") == "found":
        return f"found at {toolkit.get('home_resolved')}, no nvcc"
    return toolkit.get("reason")


def _join(*parts: Any) -> str:
    return ", ".join(str(part) for part in parts if part)
