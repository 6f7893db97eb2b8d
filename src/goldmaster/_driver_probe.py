"""Query the NVIDIA driver libraries and print the result as JSON on stdout.

goldmaster runs this file in a child process of its own interpreter, so that a
driver library that crashes or hangs on load costs a status in the manifest
instead of the capture. It reads NVML through the optional ``pynvml`` module
(the nvidia-ml-py distribution) and calls ``cuDriverGetVersion`` in
libcuda.so.1 through ctypes. Neither call needs a CUDA context.
"""

import ctypes
import json
import sys
from importlib import metadata

NVML_MIG_ENABLED = 1


def text(value):
    return (
        value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
    )


def cuda_version_text(code):
    """Turn a CUDA version code such as 12020 into 12.2."""
    return f"{code // 1000}.{(code % 1000) // 10}"


def loaded_path(fragment):
    """Return the file of a loaded shared library whose name contains ``fragment``."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if fragment in path.rsplit("/", 1)[-1]:
                    return path
    except OSError:
        return None
    return None


def probe_libcuda():
    try:
        library = ctypes.CDLL("libcuda.so.1")
    except OSError as exc:
        return {
            "status": "failed",
            "reason": f"libcuda.so.1 could not be loaded: {exc}",
        }
    value = ctypes.c_int(0)
    try:
        error = library.cuDriverGetVersion(ctypes.byref(value))
    except AttributeError:
        return {"status": "failed", "reason": "libcuda.so.1 has no cuDriverGetVersion"}
    if error != 0:
        return {
            "status": "failed",
            "reason": f"cuDriverGetVersion returned error {error}",
        }
    return {
        "status": "ok",
        "cuda_driver_version": cuda_version_text(value.value),
        "version_code": value.value,
        "path": loaded_path("libcuda.so"),
        "source": "cuDriverGetVersion() in libcuda.so.1",
    }


def probe_nvml():
    try:
        import pynvml
    except ImportError:
        return {
            "status": "not-installed",
            "reason": "nvidia-ml-py (module pynvml) is not installed",
        }

    record = {"status": "ok", "source": "NVML through pynvml"}
    try:
        record["binding_version"] = metadata.version("nvidia-ml-py")
    except metadata.PackageNotFoundError:
        record["binding_version"] = None  # pynvml from another distribution
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        record.update(status="failed", reason=f"nvmlInit failed: {exc}")
        return record
    try:
        record.update(nvml_system(pynvml))
        record["gpus"] = [
            nvml_gpu(pynvml, index) for index in range(pynvml.nvmlDeviceGetCount())
        ]
    except pynvml.NVMLError as exc:
        record.update(status="failed", reason=str(exc))
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
    record["path"] = loaded_path("libnvidia-ml.so")
    return record


def nvml_system(pynvml):
    facts = {"driver_version": text(pynvml.nvmlSystemGetDriverVersion())}
    facts["nvml_version"] = attempt(
        pynvml, lambda: text(pynvml.nvmlSystemGetNVMLVersion())
    )
    reader = getattr(pynvml, "nvmlSystemGetCudaDriverVersion_v2", None)
    reader = reader or pynvml.nvmlSystemGetCudaDriverVersion
    code = attempt(pynvml, reader)
    if isinstance(code, int):
        facts["cuda_driver_version"] = cuda_version_text(code)
    else:
        facts["cuda_driver_version_error"] = code
    return facts


def attempt(pynvml, call):
    """Return ``call()``, or an error text when NVML rejects the query."""
    try:
        return call()
    except pynvml.NVMLError as exc:
        return {"error": str(exc)}


def nvml_gpu(pynvml, index):
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    gpu = {"index": index}
    gpu["name"] = attempt(pynvml, lambda: text(pynvml.nvmlDeviceGetName(handle)))
    gpu["uuid"] = attempt(pynvml, lambda: text(pynvml.nvmlDeviceGetUUID(handle)))
    memory = attempt(pynvml, lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).total)
    gpu["memory_total_mib"] = memory // 2**20 if isinstance(memory, int) else memory
    capability = attempt(
        pynvml, lambda: pynvml.nvmlDeviceGetCudaComputeCapability(handle)
    )
    if isinstance(capability, (tuple, list)):
        capability = f"{capability[0]}.{capability[1]}"
    gpu["compute_capability"] = capability
    gpu["pci_bus_id"] = attempt(
        pynvml, lambda: text(pynvml.nvmlDeviceGetPciInfo(handle).busId)
    )

    modes = attempt(pynvml, lambda: pynvml.nvmlDeviceGetMigMode(handle))
    if isinstance(modes, (tuple, list)):
        gpu["mig_mode"] = {
            "current": "Enabled" if modes[0] == NVML_MIG_ENABLED else "Disabled",
            "pending": "Enabled" if modes[1] == NVML_MIG_ENABLED else "Disabled",
        }
        if modes[0] == NVML_MIG_ENABLED:
            gpu["mig_devices"] = nvml_mig_devices(pynvml, handle)
    else:
        gpu["mig_mode"] = modes
    return gpu


def nvml_mig_devices(pynvml, handle):
    devices = []
    count = attempt(pynvml, lambda: pynvml.nvmlDeviceGetMaxMigDeviceCount(handle))
    for slot in range(count if isinstance(count, int) else 0):
        try:
            mig = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, slot)
        except pynvml.NVMLError:
            continue  # an empty slot
        memory = attempt(
            pynvml, lambda mig=mig: pynvml.nvmlDeviceGetMemoryInfo(mig).total
        )
        devices.append(
            {
                "index": slot,
                "uuid": attempt(
                    pynvml, lambda mig=mig: text(pynvml.nvmlDeviceGetUUID(mig))
                ),
                "gpu_instance_id": attempt(
                    pynvml, lambda mig=mig: pynvml.nvmlDeviceGetGpuInstanceId(mig)
                ),
                "compute_instance_id": attempt(
                    pynvml, lambda mig=mig: pynvml.nvmlDeviceGetComputeInstanceId(mig)
                ),
                "memory_total_mib": memory // 2**20
                if isinstance(memory, int)
                else memory,
            }
        )
    return devices


def main():
    json.dump(
        {"nvml": probe_nvml(), "libcuda": probe_libcuda()}, sys.stdout, sort_keys=True
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
