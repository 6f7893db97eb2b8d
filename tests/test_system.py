"""Tests of the host probe: OS, kernel, glibc, CPU, memory, container, environment."""

from __future__ import annotations

import os
import platform
import re
import subprocess
from pathlib import Path

import pytest

from goldmaster import system

LOADER = Path("/lib64/ld-linux-x86-64.so.2")

AARCH64_CPUINFO = """\
processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

processor\t: 1
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1
"""

V1_FLAGS = {"fpu", "cx8", "cmov", "mmx", "fxsr", "sse", "sse2", "syscall"}
V2_FLAGS = V1_FLAGS | system.X86_64_LEVEL_FLAGS[2]
V3_FLAGS = V2_FLAGS | system.X86_64_LEVEL_FLAGS[3]
V4_FLAGS = V3_FLAGS | system.X86_64_LEVEL_FLAGS[4]


def test_os_release_matches_python_reader() -> None:
    record, raw = system.read_os_release(Path("/"))
    expected = platform.freedesktop_os_release()

    assert raw is not None
    assert record["id"] == expected["ID"]
    assert record["pretty_name"] == expected["PRETTY_NAME"]
    assert record.get("version_id") == expected.get("VERSION_ID")


def test_parse_os_release_handles_quotes_and_comments() -> None:
    text = '# comment\nNAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nPRETTY_NAME=\'Ubuntu 22.04.4 LTS\'\n'

    fields = system.parse_os_release(text)

    assert fields == {
        "NAME": "Ubuntu",
        "VERSION_ID": "22.04",
        "ID": "ubuntu",
        "PRETTY_NAME": "Ubuntu 22.04.4 LTS",
    }


def test_os_release_missing_is_a_status(tmp_path: Path) -> None:
    record, raw = system.read_os_release(tmp_path)

    assert raw is None
    assert record["status"] == "not-found"


def test_glibc_version_matches_ldd() -> None:
    ldd = subprocess.run(
        ["ldd", "--version"], capture_output=True, text=True, check=True
    )
    expected = ldd.stdout.splitlines()[0].split()[-1]

    assert system.glibc_version()["version"] == expected


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        (V1_FLAGS, 1),
        (V2_FLAGS, 2),
        (V3_FLAGS, 3),
        (V4_FLAGS, 4),
        (V4_FLAGS - {"movbe"}, 2),
    ],
)
def test_x86_64_level_from_flags(flags: set[str], level: int) -> None:
    assert system.x86_64_level(flags) == level


def test_missing_level_flags_names_the_gap() -> None:
    assert system.missing_level_flags(V2_FLAGS | {"avx", "avx2"}, 3) == [
        "abm",
        "bmi1",
        "bmi2",
        "f16c",
        "fma",
        "movbe",
        "xsave",
    ]


@pytest.mark.skipif(not LOADER.exists(), reason="needs glibc's x86-64 dynamic loader")
def test_x86_64_level_matches_glibc_loader() -> None:
    # glibc's loader lists the hwcaps levels this CPU supports.
    help_text = subprocess.run(
        [str(LOADER), "--help"], capture_output=True, text=True, check=False
    ).stdout
    supported = [int(n) for n in re.findall(r"x86-64-v(\d) \(supported", help_text)]
    if not supported:
        pytest.skip("this glibc's loader does not list hwcaps levels")

    cpu = system.read_cpu(Path("/"))

    assert cpu["x86_64_level"] == max(supported)


def test_read_cpu_counts_this_hosts_cpus() -> None:
    cpu = system.read_cpu(Path("/"))

    assert cpu["architecture"] == platform.machine()
    assert cpu["logical_cpus"] == os.cpu_count()
    assert "flags" not in cpu


def test_parse_cpuinfo_reads_aarch64_fields() -> None:
    record = system.parse_cpuinfo(AARCH64_CPUINFO)

    assert record["logical_cpus"] == 2
    assert record["implementer"] == "0x41"
    assert record["part"] == "0xd0c"
    assert "asimd" in record["flags"]


def test_memory_total_matches_sysconf() -> None:
    expected = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")

    assert system.read_memory(Path("/"))["total_bytes"] == expected


def test_memory_missing_is_a_status(tmp_path: Path) -> None:
    assert system.read_memory(tmp_path)["status"] == "not-readable"


@pytest.mark.parametrize(
    ("files", "environ", "kinds"),
    [
        ({}, {}, []),
        ({".dockerenv": ""}, {}, ["docker"]),
        ({"run/.containerenv": ""}, {"container": "podman"}, ["podman"]),
        ({"proc/1/cgroup": "0::/kubepods/besteffort/pod1/abc\n"}, {}, ["kubernetes"]),
        ({}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, ["kubernetes"]),
    ],
)
def test_detect_container(
    tmp_path: Path, files: dict[str, str], environ: dict[str, str], kinds: list[str]
) -> None:
    for relative, content in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(content)

    found = system.detect_container(tmp_path, environ)

    assert found["kinds"] == kinds
    assert found["detected"] is bool(kinds)
    assert len(found["evidence"]) >= len(kinds)


def test_record_environment_keeps_values_of_allowed_variables() -> None:
    environ = {
        "CUDA_VISIBLE_DEVICES": "0,1",
        "NCCL_DEBUG": "INFO",
        "NVIDIA_VISIBLE_DEVICES": "all",
        "PYTHONHASHSEED": "0",
        "HF_HOME": "/data/hf",
        "LD_LIBRARY_PATH": "/usr/local/cuda/lib64",
        "HOME": "/root",
    }

    recorded = system.record_environment(environ)

    assert recorded["values"] == {k: v for k, v in environ.items() if k != "HOME"}
    assert recorded["names_only"] == ["HOME"]


def test_record_environment_hides_secrets() -> None:
    environ = {
        "NVIDIA_API_KEY": "nvapi-secret",
        "HF_TOKEN": "hf_secret",
        "CUDA_PASSWORD": "x",
        "PYTHONPATH": "https://user:pw@example.com/lib",
    }

    recorded = system.record_environment(environ)

    assert recorded["names_only"] == ["CUDA_PASSWORD", "HF_TOKEN", "NVIDIA_API_KEY"]
    assert recorded["values"] == {"PYTHONPATH": "https://REDACTED@example.com/lib"}
    assert "secret" not in str(recorded)


def test_probe_host_keeps_os_release_file() -> None:
    data, parts = system.probe_host(Path("/"), {"CUDA_VISIBLE_DEVICES": "0"})

    assert [part.arcname for part in parts] == ["system/os-release"]
    assert parts[0].data == Path("/etc/os-release").read_bytes()
    assert set(data) == {"os", "kernel", "glibc", "cpu", "memory", "container", "env"}
    assert data["kernel"]["release"] == platform.release()
    assert data["env"]["values"] == {"CUDA_VISIBLE_DEVICES": "0"}
