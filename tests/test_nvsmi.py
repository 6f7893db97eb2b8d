"""Tests of the nvidia-smi output parsers, on outputs in the real drivers' formats."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from goldmaster import nvsmi

SCENARIOS = Path(__file__).parent / "fakes" / "scenarios"


def scenario_file(scenario: str, name: str) -> str:
    return (SCENARIOS / scenario / name).read_text()


def query_rows(scenario: str, fields: tuple[str, ...]) -> str:
    """Return the --query-gpu rows for ``fields`` without the header, as nvidia-smi prints them."""
    header, *rows = scenario_file(scenario, "query-gpu.csv").splitlines()
    columns = [name.split(" [")[0] for name in header.split(", ")]
    picked = [
        ", ".join(row.split(", ")[columns.index(f)] for f in fields) for row in rows
    ]
    return "\n".join(picked) + "\n"


def test_parse_query_csv_reads_one_gpu() -> None:
    gpus = nvsmi.parse_query_csv(
        query_rows("one-gpu", nvsmi.QUERY_FIELDS), nvsmi.QUERY_FIELDS
    )

    assert len(gpus) == 1
    gpu = gpus[0]
    assert gpu["index"] == 0
    assert gpu["name"] == "NVIDIA L4"
    assert gpu["uuid"].startswith("GPU-")
    assert gpu["pci_bus_id"] == "00000000:01:00.0"
    assert gpu["driver_version"] == "550.54.15"
    assert gpu["memory_total_mib"] == 23034
    assert gpu["compute_capability"] == "8.9"
    assert gpu["mig_mode_current"] is None


def test_parse_query_csv_reads_eight_gpus_in_order() -> None:
    gpus = nvsmi.parse_query_csv(
        query_rows("eight-gpus", nvsmi.QUERY_FIELDS), nvsmi.QUERY_FIELDS
    )

    assert [gpu["index"] for gpu in gpus] == list(range(8))
    assert {gpu["compute_capability"] for gpu in gpus} == {"9.0"}
    assert len({gpu["uuid"] for gpu in gpus}) == 8
    assert gpus[7]["pci_bus_id"] == "00000000:DB:00.0"
    assert {gpu["mig_mode_current"] for gpu in gpus} == {"Disabled"}


def test_parse_query_csv_rejects_wrong_column_count() -> None:
    with pytest.raises(ValueError, match="2 values for 9 fields"):
        nvsmi.parse_query_csv("0, NVIDIA L4\n", nvsmi.QUERY_FIELDS)


def test_parse_smi_xml_reads_driver_and_mig_devices() -> None:
    facts = nvsmi.parse_smi_xml(scenario_file("mig", "q.xml"))

    assert facts["driver_version"] == "535.104.05"
    assert facts["cuda_driver_version"] == "12.2"
    assert facts["attached_gpus"] == 1
    gpu = facts["gpus"][0]
    assert gpu["pci_bus_id"] == "00000000:07:00.0"
    assert gpu["architecture"] == "Ampere"
    assert gpu["mig_mode_current"] == "Enabled"
    assert [d["gpu_instance_id"] for d in gpu["mig_devices"]] == [1, 5, 13]
    assert [d["memory_total_mib"] for d in gpu["mig_devices"]] == [20096, 9856, 4864]
    assert [d["multiprocessor_count"] for d in gpu["mig_devices"]] == [42, 28, 14]


def test_parse_smi_xml_reads_old_driver_format() -> None:
    facts = nvsmi.parse_smi_xml(scenario_file("old-driver", "q.xml"))

    assert facts["driver_version"] == "470.82.01"
    assert facts["cuda_driver_version"] == "11.4"
    assert facts["gpus"][0]["name"] == "Tesla V100-SXM2-16GB"
    assert facts["gpus"][0]["mig_mode_current"] is None
    assert "mig_devices" not in facts["gpus"][0]


def test_parse_smi_list_reads_mig_profiles() -> None:
    gpus = nvsmi.parse_smi_list(scenario_file("mig", "L.txt"))

    assert len(gpus) == 1
    assert gpus[0]["name"] == "NVIDIA A100-SXM4-40GB"
    assert [m["profile"] for m in gpus[0]["mig_devices"]] == [
        "3g.20gb",
        "2g.10gb",
        "1g.5gb",
    ]
    assert all(m["uuid"].startswith("MIG-") for m in gpus[0]["mig_devices"])


def test_parse_smi_list_reads_eight_gpus() -> None:
    gpus = nvsmi.parse_smi_list(scenario_file("eight-gpus", "L.txt"))

    assert [gpu["index"] for gpu in gpus] == list(range(8))
    assert all(gpu["mig_devices"] == [] for gpu in gpus)


def test_driver_failure_finds_the_message() -> None:
    text = scenario_file("driver-failure", "failure.txt")

    assert nvsmi.driver_failure(text) == text.strip()
    assert nvsmi.driver_failure(scenario_file("one-gpu", "L.txt")) is None


def test_invalid_fields_names_rejected_field() -> None:
    text = 'Field "compute_cap" is not a valid field to query.\n'

    assert nvsmi.invalid_fields(text) == ["compute_cap"]


def test_stable_smi_xml_drops_readings_that_change() -> None:
    stable = nvsmi.stable_smi_xml(scenario_file("one-gpu", "q.xml")).decode()
    root = ET.fromstring(stable[stable.index("<nvidia_smi_log") :])

    assert stable.startswith('<?xml version="1.0" ?>\n<!DOCTYPE nvidia_smi_log')
    assert root.find("timestamp") is None
    assert root.find("gpu/temperature") is None
    assert root.find("gpu/processes") is None
    assert root.find("gpu/fb_memory_usage/used") is None
    assert root.findtext("gpu/fb_memory_usage/total") == "23034 MiB"
    assert root.findtext("gpu/product_name") == "NVIDIA L4"
    assert root.findtext("driver_version") == "550.54.15"


def test_stable_smi_xml_ignores_readings() -> None:
    first = scenario_file("one-gpu", "q.xml")
    second = (
        first.replace("Thu Mar 14 09:12:44 2024", "Thu Mar 14 09:13:02 2024")
        .replace("<gpu_temp>61 C</gpu_temp>", "<gpu_temp>63 C</gpu_temp>")
        .replace("<used>4215 MiB</used>", "<used>5120 MiB</used>")
        .replace("<pid>4188</pid>", "<pid>4190</pid>")
    )
    assert first != second

    assert nvsmi.stable_smi_xml(first) == nvsmi.stable_smi_xml(second)
