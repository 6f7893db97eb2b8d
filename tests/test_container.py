"""The engine operations in goldmaster.container against the real Podman engine."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from goldmaster import container
from goldmaster.errors import EngineError
from goldmaster.parts import Part

pytestmark = pytest.mark.engine

LARGE_IMAGE_MB = int(os.environ.get("GOLDMASTER_TEST_LARGE_IMAGE_MB", "300"))


def unique_tag(prefix: str = "gm-test") -> str:
    return f"localhost/{prefix}:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cleanup_images(engine):
    references: list[str] = []
    yield references
    for reference in references:
        container.remove_image(reference, client=engine)


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_connect_negotiates_api_version(engine):
    info = container.engine_info(engine)

    assert info["name"] == "podman"
    assert info["version"]
    assert info["api_version"].startswith("1.")


def test_connect_without_engine_raises(monkeypatch, tmp_path):
    missing = tmp_path / "absent.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{missing}")

    with pytest.raises(EngineError) as caught:
        container.connect()

    assert str(missing) in caught.value.message
    assert "not reachable" in caught.value.message
    assert "DOCKER_HOST" in caught.value.hint


def test_context_stream_holds_only_copied_sources(tmp_path):
    write_files(tmp_path, {"code/app.py": "print(1)\n", "code/pkg/mod.py": "x = 2\n"})
    (tmp_path / "weights").mkdir()
    # A link out of the root fails when walked, so this passes only if
    # weights/ is never read.
    (tmp_path / "weights" / "outside").symlink_to("/etc/hostname")
    dockerfile = "FROM scratch\nCOPY code/ /code/\n"

    parts = container.context_parts(tmp_path, container.copied_sources(dockerfile))
    data = b"".join(
        container.context_tar_stream(parts, {"Dockerfile": b"FROM scratch\n"})
    )

    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        members = {member.name: member for member in archive.getmembers()}
        assert sorted(members) == [
            "Dockerfile",
            "code",
            "code/app.py",
            "code/pkg",
            "code/pkg/mod.py",
        ]
        assert archive.extractfile("code/pkg/mod.py").read() == b"x = 2\n"
        assert members["code/app.py"].uid == 0
        assert members["code/app.py"].mtime == 0


def test_context_link_outside_root_raises(tmp_path):
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "outside").symlink_to("/etc/hostname")

    with pytest.raises(EngineError, match="links outside"):
        container.context_parts(tmp_path, ["weights"])


def test_context_folder_link_raises(tmp_path):
    (tmp_path / "code" / "real").mkdir(parents=True)
    (tmp_path / "code" / "alias").symlink_to("real")

    with pytest.raises(EngineError, match="is a symbolic link"):
        container.context_parts(tmp_path, ["code"])


def test_context_stream_detects_shrunk_file(tmp_path):
    source = tmp_path / "weights.bin"
    source.write_bytes(b"x" * (3 * container.CHUNK_SIZE))
    stream = container.context_tar_stream(
        [Part("weights/weights.bin", source=source)], {}
    )
    next(stream)  # the folder entry for weights/
    next(stream)  # the file's header, written with the size before truncation
    source.write_bytes(b"x" * 10)

    with pytest.raises(EngineError, match="shrank while the build context was sent"):
        list(stream)


def test_build_copies_and_runs(engine, base_image, cleanup_images, tmp_path):
    write_files(tmp_path, {"code/greeting.txt": "hello from the context\n"})
    dockerfile = textwrap.dedent(
        f"""\
        FROM {base_image.busybox}
        COPY code/ /app/
        RUN grep -q 'hello from the context' /app/greeting.txt \\
            && echo built > /app/stamp
        LABEL org.opencontainers.image.title="build-test"
        """
    )
    tag = unique_tag()
    cleanup_images.append(tag)

    info = container.build_image(
        tmp_path, dockerfile, tags=[tag], labels={"extra": "yes"}
    )

    assert info.id.startswith("sha256:")
    assert tag in info.tags
    assert info.labels["org.opencontainers.image.title"] == "build-test"
    assert info.labels["extra"] == "yes"
    status, output = container.run_container(
        tag, ["cat", "/app/stamp", "/app/greeting.txt"]
    )
    assert status == 0
    assert output == "built\nhello from the context\n"


def test_build_from_parts_streams_files_and_data(
    engine, base_image, cleanup_images, tmp_path
):
    source = tmp_path / "model.bin"
    source.write_bytes(b"\x00\x01weights")
    parts = [
        Part("weights/model.bin", source=source),
        Part("env/requirements.lock", data=b"example==1.0\n"),
        Part("code/unused.py", data=b"not copied\n"),
    ]
    dockerfile = (
        f"FROM {base_image.busybox}\n"
        "COPY weights/ /w/\n"
        "COPY env/requirements.lock /env/\n"
        "RUN ls /w /env > /listing\n"
    )
    tag = unique_tag()
    cleanup_images.append(tag)

    container.build_image(parts, dockerfile, tags=[tag])

    status, output = container.run_container(tag, ["cat", "/listing", "/w/model.bin"])
    assert status == 0
    assert "model.bin" in output
    assert "requirements.lock" in output
    assert output.endswith("\x00\x01weights")


def test_build_missing_source_raises(engine, base_image, tmp_path):
    dockerfile = f"FROM {base_image.busybox}\nCOPY env/wheels/ /wheels/\n"

    with pytest.raises(EngineError, match="missing 'env/wheels'"):
        container.build_image(tmp_path, dockerfile, tags=[unique_tag()])


def test_build_failing_run_step_reports_step(engine, base_image, tmp_path):
    dockerfile = textwrap.dedent(
        f"""\
        FROM {base_image.busybox}
        RUN echo preparing
        RUN echo first-line-of-output; echo failure-detail >&2; exit 3
        RUN echo never-reached
        """
    )

    with pytest.raises(container.ImageBuildError) as caught:
        container.build_image(tmp_path, dockerfile, tags=[unique_tag()])

    error = caught.value
    assert error.step is not None
    assert "3/4" in error.step
    assert "exit 3" in error.step
    assert "failure-detail" in error.output_tail
    assert "first-line-of-output" in error.output_tail
    assert "never-reached" not in error.message
    assert "exit 3" in error.message
    assert "failure-detail" in error.message


def test_save_and_load_after_removal(engine, base_image, cleanup_images, tmp_path):
    write_files(tmp_path, {"code/data.txt": "kept across save and load\n"})
    dockerfile = f"FROM {base_image.busybox}\nCOPY code/ /app/\n"
    tag = unique_tag()
    cleanup_images.append(tag)
    built = container.build_image(tmp_path, dockerfile, tags=[tag])
    archive = tmp_path / "image.tar"

    size = container.save_image(tag, archive)
    container.remove_image(tag)
    assert not container.image_exists(built.id)

    loaded_id = container.load_image(archive, tags=[tag])

    assert size == archive.stat().st_size
    assert not archive.with_name("image.tar.partial").exists()
    assert loaded_id == built.id
    assert container.archive_image_id(archive) == built.id
    assert tag in container.image_info(loaded_id).tags
    status, output = container.run_container(tag, ["cat", "/app/data.txt"])
    assert status == 0
    assert output == "kept across save and load\n"


def test_load_adds_extra_tags(engine, base_image, cleanup_images, tmp_path):
    tag = unique_tag()
    extra = unique_tag("gm-test-extra")
    cleanup_images.extend([tag, extra])
    container.build_image(
        tmp_path, f"FROM {base_image.busybox}\nRUN true\n", tags=[tag]
    )
    archive = tmp_path / "image.tar"
    container.save_image(tag, archive)
    container.remove_image(tag)

    image_id = container.load_image(archive, tags=[tag, extra])

    assert {tag, extra} <= set(container.image_info(image_id).tags)


def test_load_rejects_non_archive(engine, tmp_path):
    bogus = tmp_path / "image.tar"
    bogus.write_bytes(b"not a tar file")

    with pytest.raises(EngineError, match="not a docker save archive"):
        container.load_image(bogus)


def test_save_missing_image_raises(engine, tmp_path):
    dest = tmp_path / "image.tar"

    with pytest.raises(EngineError, match="saving image"):
        container.save_image(unique_tag("gm-test-absent"), dest)

    assert not dest.exists()
    assert not dest.with_name("image.tar.partial").exists()


def test_run_container_reports_exit_status(engine, base_image):
    status, output = container.run_container(
        base_image.busybox, ["sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7"]
    )

    assert status == 7
    assert "to-stdout" in output
    assert "to-stderr" in output


def containers_running(engine, marker: str) -> list[str]:
    """Return the ids of the engine's containers whose command contains ``marker``."""
    return [
        item.id
        for item in engine.containers.list(all=True)
        if marker in " ".join(item.attrs["Config"].get("Cmd") or [])
    ]


def test_run_in_image_separates_streams(engine, base_image, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "input.txt").write_text("mounted read-only\n")
    (tmp_path / "out").mkdir()
    script = (
        "cat /in/input.txt; echo to-stderr >&2; pwd; echo $GREETING; "
        "echo written > /out/result.txt; touch /in/denied || echo ro-refused >&2; "
        "exit 5"
    )
    marker = f"# {uuid.uuid4().hex}"

    status, stdout, stderr = container.run_in_image(
        base_image.busybox,
        ["/bin/sh", "-c", f"{script} {marker}"],
        workdir="/tmp",
        env={"GREETING": "hello from env"},
        mounts=[f"{tmp_path / 'in'}:/in:ro", f"{tmp_path / 'out'}:/out:rw"],
        timeout=60,
    )

    assert status == 5
    assert stdout == b"mounted read-only\n/tmp\nhello from env\n"
    assert stderr.startswith(b"to-stderr\n")
    assert b"ro-refused" in stderr
    assert (tmp_path / "out" / "result.txt").read_text() == "written\n"
    assert not (tmp_path / "in" / "denied").exists()
    assert containers_running(engine, marker) == []


def test_run_in_image_kills_on_timeout(engine, base_image):
    marker = f"# {uuid.uuid4().hex}"
    started = time.monotonic()

    status, stdout, stderr = container.run_in_image(
        base_image.busybox,
        ["/bin/sh", "-c", f"echo begun; sleep 120 {marker}"],
        timeout=2,
    )

    elapsed = time.monotonic() - started
    assert status is None
    assert stdout == b"begun\n"
    assert stderr == b""
    assert elapsed < 60
    assert containers_running(engine, marker) == []


def test_run_in_image_rejects_bad_mount(engine, base_image, tmp_path):
    with pytest.raises(EngineError, match="invalid bind mount"):
        container.run_in_image(
            base_image.busybox, ["true"], mounts=[f"{tmp_path}:/in"], timeout=30
        )
    with pytest.raises(EngineError, match="not found"):
        container.run_in_image(
            base_image.busybox,
            ["true"],
            mounts=[f"{tmp_path / 'absent'}:/in:ro"],
            timeout=30,
        )


def test_run_in_image_missing_image_raises(engine):
    with pytest.raises(EngineError) as caught:
        container.run_in_image(unique_tag("gm-test-absent"), ["true"], timeout=30)

    assert "not found in the engine" in caught.value.message
    assert "--image" in caught.value.hint


MEMORY_PROBE = """
import json, resource, sys
from pathlib import Path
from goldmaster import container

def peak_kib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

context, tag, archive = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
# A 2 s client timeout: the save must pass no timeout of its own to survive it.
client = container.connect(timeout=2)
container.engine_info(client)
baseline = peak_kib()
dockerfile = "FROM localhost/busybox:local\\nCOPY weights/ /weights/\\n"
container.build_image(context, dockerfile, tags=[tag], client=client)
after_build = peak_kib()
size = container.save_image(tag, archive, client=client)
after_save = peak_kib()
print(json.dumps({"baseline": baseline, "after_build": after_build,
                  "after_save": after_save, "size": size}))
"""


@pytest.mark.slow
def test_large_image_build_and_save_memory_flat(
    engine, base_image, cleanup_images, tmp_path
):
    weights = tmp_path / "context" / "weights"
    weights.mkdir(parents=True)
    chunk = os.urandom(1 << 20)
    with open(weights / "model.bin", "wb") as handle:
        # Vary each MiB so that no layer compresses or deduplicates it.
        handle.writelines(
            index.to_bytes(4, "little") + chunk[4:] for index in range(LARGE_IMAGE_MB)
        )
    tag = unique_tag("gm-test-large")
    cleanup_images.append(tag)
    archive = tmp_path / "image.tar"

    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, str(weights.parent), tag, str(archive)],
        capture_output=True,
        text=True,
        check=False,
        env=dict(os.environ),
    )

    assert result.returncode == 0, result.stderr
    peaks = json.loads(result.stdout)
    image_bytes = LARGE_IMAGE_MB << 20
    assert peaks["size"] > image_bytes
    assert archive.stat().st_size == peaks["size"]
    # ru_maxrss is in KiB on Linux. Buffering the weights or the archive would
    # add at least LARGE_IMAGE_MB MiB; streaming adds a few MiB of buffers.
    growth_mib = (peaks["after_save"] - peaks["baseline"]) / 1024
    assert growth_mib < 48, peaks
