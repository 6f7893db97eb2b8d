"""Dockerfile rendering from a manifest, without an engine."""

from __future__ import annotations

import pytest

from goldmaster.dockerfile import (
    MANIFEST_DIGEST_LABEL,
    WEIGHTS_PATH,
    copied_sources,
    cuda_base_image,
    manifest_digest,
    render_dockerfile,
)
from goldmaster.errors import UsageError


def make_manifest(**overrides: object) -> dict:
    manifest: dict = {
        "name": "minilm",
        "version": "1.2.0",
        "created": "2024-05-01T12:00:00Z",
        "code": {
            "git": {"commit": "0123abcd", "remote": "https://example.org/ml/minilm.git"}
        },
        "environment": {
            "interpreter": {"version": "3.11.7", "major_minor": "3.11"},
            "index": {
                "effective": {
                    "index_url": "https://pypi.org/simple",
                    "extra_index_urls": [],
                },
                "sources": [],
            },
            "wheels": {"vendored": True, "count": 3, "missing": []},
        },
    }
    manifest.update(overrides)
    return manifest


def set_indexes(manifest: dict, index_url: str, *extra: str) -> None:
    effective = manifest["environment"]["index"]["effective"]
    effective["index_url"] = index_url
    effective["extra_index_urls"] = list(extra)


def gpu_manifest(cuda: str, cudnn: str | None, os_id: str, os_version: str) -> dict:
    torch: dict = {
        "cuda_build_version": {"value": cuda, "source": "torch.version.cuda"}
    }
    if cudnn:
        torch["cudnn_version"] = {
            "value": cudnn,
            "source": "torch.backends.cudnn.version()",
        }
    return make_manifest(
        system={
            "os": {"id": os_id, "version_id": os_version},
            "cuda": {
                "runtime_version": {"value": cuda, "source": "torch.version.cuda"},
                "frameworks": {"torch": torch},
            },
        }
    )


def render(manifest: dict, *, weights: bool = True, vendored: bool = True) -> str:
    return render_dockerfile(
        manifest, base_image=None, weights=weights, vendored=vendored
    )


def from_lines(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if line.startswith("FROM ")]


def test_render_without_gpu_uses_slim_python():
    dockerfile = render(make_manifest())

    assert from_lines(dockerfile) == [
        "FROM python:3.11-slim AS environment",
        "FROM python:3.11-slim",
    ]


@pytest.mark.parametrize(
    ("cuda", "cudnn", "os_id", "os_version", "expected"),
    [
        ("12.4", "9.1.0", "ubuntu", "22.04", "12.4.1-cudnn-runtime-ubuntu22.04"),
        ("11.8", "8.7.0", "ubuntu", "22.04", "11.8.0-cudnn8-runtime-ubuntu22.04"),
        ("12.1", "8902", "ubuntu", "20.04", "12.1.1-cudnn8-runtime-ubuntu20.04"),
        ("12.3.2", "9.0.0", "ubuntu", "22.04", "12.3.2-cudnn9-runtime-ubuntu22.04"),
        ("12.4.131", None, "ubuntu", "22.04", "12.4.1-runtime-ubuntu22.04"),
        ("12.6", "90501", "rocky", "9.3", "12.6.3-cudnn-runtime-rockylinux9"),
        ("12.8", "9.7.1", "debian", "12", "12.8.1-cudnn-runtime-ubuntu22.04"),
        ("13.0", "9.13.0", "debian", "13", "13.0.2-cudnn-runtime-ubuntu24.04"),
    ],
)
def test_cuda_base_image_matches_capture(cuda, cudnn, os_id, os_version, expected):
    assert cuda_base_image(cuda, cudnn, os_id, os_version) == f"nvidia/cuda:{expected}"


def test_render_with_gpu_installs_python_on_cuda_image():
    manifest = gpu_manifest("12.4", "9.1.0", "ubuntu", "22.04")

    dockerfile = render(manifest)

    assert (
        from_lines(dockerfile)[1] == "FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04"
    )
    assert "ppa:deadsnakes/ppa" in dockerfile
    assert "RUN python3.11 -m venv /opt/goldmaster/venv" in dockerfile


def test_render_cudnn_from_nvidia_wheel():
    manifest = gpu_manifest("12.1", None, "ubuntu", "22.04")
    manifest["system"]["cuda"]["nvidia_wheels"] = [
        {"name": "nvidia-cublas-cu12", "version": "12.1.3.1"},
        {"name": "nvidia-cudnn-cu12", "version": "8.9.2.26"},
    ]

    dockerfile = render(manifest)

    assert "FROM nvidia/cuda:12.1.1-cudnn8-runtime-ubuntu22.04" in from_lines(
        dockerfile
    )


def test_render_with_ubuntu_python_skips_deadsnakes():
    manifest = gpu_manifest("12.4", "9.1.0", "ubuntu", "22.04")
    manifest["environment"]["interpreter"] = {
        "version": "3.10.12",
        "major_minor": "3.10",
    }

    dockerfile = render(manifest)

    assert "deadsnakes" not in dockerfile
    assert "python3.10 python3.10-venv" in dockerfile


def test_render_base_image_option_overrides_choice():
    manifest = gpu_manifest("12.4", "9.1.0", "ubuntu", "22.04")

    dockerfile = render_dockerfile(
        manifest, base_image="registry.example/base:1", weights=True, vendored=True
    )

    assert from_lines(dockerfile) == [
        "FROM registry.example/base:1 AS environment",
        "FROM registry.example/base:1",
    ]
    assert "apt-get" not in dockerfile


def test_render_vendored_installs_offline_with_hashes():
    dockerfile = render(make_manifest(), vendored=True)

    assert "COPY env/wheels/ /opt/goldmaster/env/wheels/" in dockerfile
    assert "--no-index" in dockerfile
    assert "--find-links /opt/goldmaster/env/wheels --require-hashes" in dockerfile
    assert "--mount=type=secret" not in dockerfile
    assert "pypi.org" not in dockerfile


def test_render_vendored_installs_missing_from_index():
    manifest = make_manifest()
    set_indexes(manifest, "https://REDACTED@pypi.example.org/simple")
    manifest["environment"]["wheels"]["missing"] = [
        {"name": "sdist-only", "version": "0.3", "reason": "no wheel"}
    ]

    dockerfile = render(manifest, vendored=True)

    assert "--require-hashes" in dockerfile
    assert "PIP_CONFIG_FILE=/run/secrets/pip.conf" in dockerfile
    assert dockerfile.index("--require-hashes") < dockerfile.index("sdist-only==0.3")


def test_render_index_credentials_use_build_secret():
    manifest = make_manifest()
    set_indexes(
        manifest,
        "https://REDACTED@pypi.example.org/simple",
        "https://download.example.org/whl/cu124",
    )

    dockerfile = render(manifest, vendored=False)

    assert (
        "RUN --mount=type=secret,id=pip.conf,target=/run/secrets/pip.conf" in dockerfile
    )
    assert "PIP_CONFIG_FILE=/run/secrets/pip.conf" in dockerfile
    assert "REDACTED" not in dockerfile


def test_render_public_index_passed_on_command_line():
    manifest = make_manifest()
    set_indexes(
        manifest, "https://pypi.org/simple", "https://download.example.org/whl/cu124"
    )

    dockerfile = render(manifest, vendored=False)

    assert "--index-url https://pypi.org/simple" in dockerfile
    assert "--extra-index-url https://download.example.org/whl/cu124" in dockerfile
    assert "--mount=type=secret" not in dockerfile


def test_render_lockfile_index_sources_added():
    manifest = make_manifest()
    manifest["environment"]["index"]["sources"] = [
        {
            "option": "extra-index-url",
            "source": "requirements.txt",
            "url": "https://lock.example/simple",
        },
        {
            "option": "index-url",
            "source": "pip.conf",
            "url": "https://conf.example/simple",
        },
    ]

    dockerfile = render(manifest, vendored=False)

    assert "--extra-index-url https://lock.example/simple" in dockerfile
    assert "conf.example" not in dockerfile


def test_render_credentials_in_manifest_never_reach_dockerfile():
    manifest = make_manifest()
    set_indexes(manifest, "https://alice:s3cret@pypi.example.org/simple")

    dockerfile = render(manifest, vendored=False)

    assert "s3cret" not in dockerfile
    assert "alice" not in dockerfile
    assert "--mount=type=secret" in dockerfile


def test_render_unvendored_uses_carried_wheels():
    manifest = make_manifest()
    manifest["environment"]["wheels"] = {"vendored": False, "count": 1, "missing": []}

    dockerfile = render(manifest, vendored=False)

    assert "COPY env/wheels/ /opt/goldmaster/env/wheels/" in dockerfile
    assert "--find-links /opt/goldmaster/env/wheels -r" in dockerfile
    assert "--no-index" not in dockerfile


def test_render_unvendored_without_wheels_skips_copy():
    manifest = make_manifest()
    manifest["environment"]["wheels"] = {"vendored": False, "count": 0, "missing": []}

    dockerfile = render(manifest, vendored=False)
    first_stage = dockerfile.split("\nFROM ")[1]

    assert "env/wheels" not in copied_sources(dockerfile)
    assert "WORKDIR /opt/goldmaster\n" in first_stage
    assert "COPY code/ /opt/goldmaster/code/" in first_stage


def test_render_labels_carry_oci_keys_and_digest():
    manifest = make_manifest()

    dockerfile = render(manifest)

    assert 'org.opencontainers.image.title="minilm"' in dockerfile
    assert 'org.opencontainers.image.version="1.2.0"' in dockerfile
    assert 'org.opencontainers.image.created="2024-05-01T12:00:00Z"' in dockerfile
    assert 'org.opencontainers.image.revision="0123abcd"' in dockerfile
    assert (
        'org.opencontainers.image.source="https://example.org/ml/minilm.git"'
        in dockerfile
    )
    assert f'{MANIFEST_DIGEST_LABEL}="{manifest_digest(manifest)}"' in dockerfile


def test_manifest_digest_ignores_later_writes():
    weights = {"path": "weights/model.bin", "size": 3, "sha256": "a" * 64}
    manifest = make_manifest(files=[weights])
    final = make_manifest(
        files=[
            {"path": "README.txt", "size": 9, "sha256": "b" * 64},
            {"path": "image/Dockerfile", "size": 9, "sha256": "c" * 64},
            weights,
        ],
        image={"id": "sha256:" + "0" * 64},
    )
    changed = make_manifest(files=[dict(weights, sha256="d" * 64)])

    assert manifest_digest(final) == manifest_digest(manifest)
    assert manifest_digest(changed) != manifest_digest(manifest)
    assert manifest_digest(make_manifest(version="2")) != manifest_digest(
        make_manifest()
    )


def test_render_label_values_expand_no_variables():
    manifest = make_manifest(name='odd "name" $HOME')

    dockerfile = render(manifest)

    assert 'org.opencontainers.image.title="odd \\"name\\" \\$HOME"' in dockerfile


def test_render_with_weights_copies_them():
    dockerfile = render(make_manifest(), weights=True)

    assert f"COPY weights/ {WEIGHTS_PATH}/" in dockerfile
    assert "weights" in copied_sources(dockerfile)


def test_render_without_weights_documents_mount():
    dockerfile = render(make_manifest(), weights=False)

    assert "weights" not in copied_sources(dockerfile)
    assert f"GOLDMASTER_WEIGHTS={WEIGHTS_PATH}" in dockerfile
    assert f'io.goldmaster.weights="mount at {WEIGHTS_PATH}"' in dockerfile


def test_render_without_python_version_raises():
    manifest = make_manifest(environment={})

    with pytest.raises(UsageError, match="no Python version"):
        render(manifest)


def test_copied_sources_skips_stage_copies_and_comments():
    dockerfile = (
        "FROM base AS one\n"
        "# COPY secret/ /nope\n"
        "COPY --chown=0:0 env/requirements.lock \\\n"
        "     env/wheels/ /opt/env/\n"
        "FROM base\n"
        "COPY --from=one /opt/venv /opt/venv\n"
        "ADD code/ /opt/code/\n"
    )

    assert copied_sources(dockerfile) == ["env/requirements.lock", "env/wheels", "code"]
