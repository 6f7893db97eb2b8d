"""Parse the outputs of nvidia-smi: ``--query-gpu`` CSV, ``-q -x`` XML and ``-L``.

The parsers take text and return plain data; they never run the tool. Values
that nvidia-smi prints as ``[N/A]``, ``N/A`` or ``[Not Supported]`` become None.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

# The --query-gpu fields goldmaster requests, in order. compute_cap is missing
# from drivers older than R510, so the probe retries without it.
QUERY_FIELDS = (
    "index",
    "name",
    "uuid",
    "pci.bus_id",
    "driver_version",
    "memory.total",
    "compute_cap",
    "mig.mode.current",
    "mig.mode.pending",
)
_QUERY_KEYS = {
    "index": "index",
    "name": "name",
    "uuid": "uuid",
    "pci.bus_id": "pci_bus_id",
    "driver_version": "driver_version",
    "memory.total": "memory_total_mib",
    "compute_cap": "compute_capability",
    "mig.mode.current": "mig_mode_current",
    "mig.mode.pending": "mig_mode_pending",
}

# Messages nvidia-smi prints instead of data when the driver is unusable.
DRIVER_FAILURES = (
    "couldn't communicate with the NVIDIA driver",
    "Failed to initialize NVML",
    "Driver/library version mismatch",
    "NVIDIA driver is not loaded",
    "Unable to determine the device handle",
)
NO_DEVICES = "No devices were found"
INVALID_FIELD = re.compile(r'Field "(?P<field>[^"]+)" is not a valid field to query')

# Elements of `nvidia-smi -q -x` whose values change from one run to the next
# (clocks, temperatures, power, utilization, memory in use, error counters,
# processes). The copy kept in a bundle leaves them out so that two captures
# of the same host give the same bytes.
VOLATILE_XML_TAGS = frozenset(
    {
        "accounted_processes",
        "clocks",
        "clocks_event_reasons",
        "clocks_throttle_reasons",
        "ecc_error_count",
        "ecc_errors",
        "encoder_stats",
        "fan_speed",
        "fbc_stats",
        "free",
        "gpu_memory_power_readings",
        "gpu_power_readings",
        "inforom_bbx_flush",
        "module_power_readings",
        "pci_gpu_link_info",
        "performance_state",
        "power_readings",
        "processes",
        "remapped_rows",
        "replay_counter",
        "replay_rollover_counter",
        "retired_pages",
        "rx_util",
        "temperature",
        "timestamp",
        "tx_util",
        "used",
        "utilization",
        "voltage",
    }
)

_NOT_AVAILABLE = {"", "N/A", "[N/A]", "[Not Supported]", "Not Supported", "None"}
_LIST_GPU = re.compile(
    r"^GPU (?P<index>\d+): (?P<name>.+?) \(UUID: (?P<uuid>[^)]+)\)\s*$"
)
_LIST_MIG = re.compile(
    r"^\s+MIG (?P<profile>\S+)\s+Device\s+(?P<device>\d+): \(UUID: (?P<uuid>[^)]+)\)\s*$"
)


def driver_failure(text: str) -> str | None:
    """Return the line that reports an unusable driver, if ``text`` has one."""
    for line in text.splitlines():
        if any(marker in line for marker in DRIVER_FAILURES):
            return line.strip()
    return None


def invalid_fields(text: str) -> list[str]:
    """Return the --query-gpu fields that this nvidia-smi rejected."""
    return [match.group("field") for match in INVALID_FIELD.finditer(text)]


def parse_query_csv(text: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Parse ``--format=csv,noheader`` rows for ``fields`` into GPU records."""
    gpus = []
    for line in text.splitlines():
        if not line.strip():
            continue
        values = [value.strip() for value in line.split(", ")]
        if len(values) != len(fields):
            raise ValueError(
                f"nvidia-smi printed {len(values)} values for {len(fields)} fields: {line!r}"
            )
        gpus.append(_query_record(dict(zip(fields, values))))
    return sorted(gpus, key=lambda gpu: gpu["index"])


def _query_record(row: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for field, value in row.items():
        key = _QUERY_KEYS.get(field, field)
        record[key] = None if value in _NOT_AVAILABLE else value
    record["index"] = int(row["index"])
    if record.get("memory_total_mib"):
        record["memory_total_mib"] = _mib(record["memory_total_mib"])
    return record


def parse_smi_xml(text: str) -> dict[str, Any]:
    """Parse ``nvidia-smi -q -x`` into driver facts and GPU records."""
    root = ET.fromstring(text.encode("utf-8"))
    facts: dict[str, Any] = {
        "driver_version": _text(root, "driver_version"),
        "cuda_driver_version": _text(root, "cuda_version"),
        "attached_gpus": _int(_text(root, "attached_gpus")),
    }
    # Document order is PCI bus order, the order of nvidia-smi's GPU indexes.
    facts["gpus"] = [_xml_gpu(element) for element in root.findall("gpu")]
    return facts


def _xml_gpu(element: ET.Element) -> dict[str, Any]:
    gpu: dict[str, Any] = {
        "pci_bus_id": element.get("id") or _text(element, "pci/pci_bus_id"),
        "name": _text(element, "product_name"),
        "architecture": _text(element, "product_architecture"),
        "uuid": _text(element, "uuid"),
        "minor_number": _int(_text(element, "minor_number")),
        "memory_total_mib": _mib(_text(element, "fb_memory_usage/total")),
        "mig_mode_current": _text(element, "mig_mode/current_mig"),
        "mig_mode_pending": _text(element, "mig_mode/pending_mig"),
    }
    devices = []
    for mig in element.findall("mig_devices/mig_device"):
        devices.append(
            {
                "index": _int(_text(mig, "index")),
                "gpu_instance_id": _int(_text(mig, "gpu_instance_id")),
                "compute_instance_id": _int(_text(mig, "compute_instance_id")),
                "multiprocessor_count": _int(
                    _text(mig, "device_attributes/shared/multiprocessor_count")
                ),
                "memory_total_mib": _mib(_text(mig, "fb_memory_usage/total")),
            }
        )
    if devices:
        gpu["mig_devices"] = devices
    return gpu


def parse_smi_list(text: str) -> list[dict[str, Any]]:
    """Parse ``nvidia-smi -L``: GPUs with their MIG devices, profiles and UUIDs."""
    gpus: list[dict[str, Any]] = []
    for line in text.splitlines():
        gpu_match = _LIST_GPU.match(line)
        if gpu_match:
            gpus.append(
                {
                    "index": int(gpu_match.group("index")),
                    "name": gpu_match.group("name"),
                    "uuid": gpu_match.group("uuid"),
                    "mig_devices": [],
                }
            )
            continue
        mig_match = _LIST_MIG.match(line)
        if mig_match and gpus:
            gpus[-1]["mig_devices"].append(
                {
                    "index": int(mig_match.group("device")),
                    "profile": mig_match.group("profile"),
                    "uuid": mig_match.group("uuid"),
                }
            )
    return gpus


def stable_smi_xml(text: str) -> bytes:
    """Return ``nvidia-smi -q -x`` output without the readings that change per run.

    The XML declaration and DOCTYPE are kept; a comment names what was removed.
    """
    start = text.find("<nvidia_smi_log")
    prolog = text[:start].strip() if start > 0 else ""
    root = ET.fromstring(text[max(0, start) :].encode("utf-8"))
    _remove_tags(root, VOLATILE_XML_TAGS)
    for element in root.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        element.tail = None
    ET.indent(root, space="\t")
    note = (
        "<!-- goldmaster removed readings that change between runs: "
        + ", ".join(sorted(VOLATILE_XML_TAGS))
        + " -->"
    )
    body = ET.tostring(root, encoding="unicode")
    return (
        "\n".join(part for part in (prolog, note, body) if part).encode("utf-8") + b"\n"
    )


def _remove_tags(element: ET.Element, tags: frozenset[str]) -> None:
    for child in list(element):
        if child.tag in tags:
            element.remove(child)
        else:
            _remove_tags(child, tags)


def _text(element: ET.Element, path: str) -> str | None:
    found = element.find(path)
    if found is None or found.text is None:
        return None
    value = found.text.strip()
    return None if value in _NOT_AVAILABLE else value


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _mib(value: str | None) -> int | None:
    """Turn ``40960 MiB`` (or a bare number from ``nounits``) into 40960."""
    if value is None:
        return None
    match = re.fullmatch(r"(\d+)(?:\s*MiB)?", value.strip())
    return int(match.group(1)) if match else None
