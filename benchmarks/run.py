"""Time goldmaster beside the standard tools and write the results to BENCHMARKS.md.

    python run.py --data DATA --out OUT --size-gb N --memory-sizes "1 2 4 8"
                  --runs R --goldmaster PATH --report BENCHMARKS.md

Every group of commands runs R rounds. Within a round the commands of a
group run one after another, in the reverse order every other round, so that
a change in the machine's load hits all of them alike. Before each command the
dirty pages of the one before are written out (``sync``, not timed), the
command's own output from the round before is deleted (not timed), and all
reads come from a warm page cache. Wall time is measured around the process;
CPU time and peak memory come from wait4's resource usage, whose ru_maxrss is
that of the largest process in the command's tree. Captures run with
--no-env --no-image so that they measure the bundle alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
START = "<!-- results start -->"
END = "<!-- results end -->"


@dataclass
class Command:
    """One measured command line and the folder it needs empty before it runs."""

    label: str
    argv: list[str]
    fresh: Path | None = None
    # Files the command writes, deleted before each run: replacing a file
    # that is still in the page cache costs more than writing a new one.
    outputs: tuple[Path, ...] = ()
    samples: list[dict[str, float]] = field(default_factory=list)

    def shell(self) -> str:
        return shlex.join(self.argv)


def run_once(command: Command) -> dict[str, float]:
    if command.fresh is not None:
        shutil.rmtree(command.fresh, ignore_errors=True)
        command.fresh.mkdir(parents=True)
    for path in command.outputs:
        path.unlink(missing_ok=True)
    subprocess.run(["sync"], check=True)
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(
            command.argv, stdout=subprocess.DEVNULL, stderr=errors
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace")
            raise SystemExit(
                f"{command.shell()} exited with {process.returncode}:\n{message}"
            )
    sample = {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "load": load,
    }
    command.samples.append(sample)
    return sample


def run_group(commands: list[Command], runs: int) -> None:
    for round_number in range(runs):
        order = commands if round_number % 2 == 0 else list(reversed(commands))
        for command in order:
            sample = run_once(command)
            print(
                f"  {command.label}: {sample['wall']:.2f} s, {sample['rss_mb']:.0f} MB, "
                f"load {sample['load']:.1f}",
                file=sys.stderr,
                flush=True,
            )


def median(command: Command, key: str) -> float:
    return statistics.median(sample[key] for sample in command.samples)


def _output(argv: list[str]) -> str:
    return subprocess.run(
        argv, check=False, capture_output=True, text=True
    ).stdout.strip()


def describe_machine() -> dict[str, str]:
    cpu = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    zstd = _output(["zstd", "--version"])
    commit = _output(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"])
    dirty = _output(
        ["git", "-C", str(HERE), "status", "--porcelain", "--untracked-files=no"]
    )
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": cpu,
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "zstd": zstd.strip().split(",")[0].replace("*** ", ""),
        "goldmaster commit": commit + (" with uncommitted changes" if dirty else ""),
    }


class Bench:
    """The benchmark's paths and the commands it compares."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.data: Path = args.data.resolve()
        self.out: Path = args.out.resolve()
        self.gm = str(Path(args.goldmaster).resolve())
        self.runs: int = args.runs
        self.empty_code = self.data / "empty-code"
        self.empty_code.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {"groups": {}, "memory": [], "sizes": {}}

    def capture(
        self, model: Path, name: str, *extra: str, code: Path | None = None
    ) -> list[str]:
        return [
            self.gm,
            "capture",
            str(model),
            "--code",
            str(code or self.empty_code),
            "--no-env",
            "--no-image",
            "-o",
            str(self.out / "gm"),
            "--name",
            name,
            "--version",
            "1",
            "--force",
            "-q",
            *extra,
        ]

    def bundle(self, name: str) -> Path:
        return self.out / "gm" / f"{name}-1.gm.tar.zst"

    def capture_command(
        self, label: str, model: Path, name: str, *extra: str, code: Path | None = None
    ) -> Command:
        bundle = self.bundle(name)
        return Command(
            label,
            self.capture(model, name, *extra, code=code),
            outputs=(bundle, bundle.with_name(bundle.name + ".sha256")),
        )

    def tar_command(
        self, label: str, folder: Path, target: Path, exclude_git: bool = False
    ) -> Command:
        return Command(
            label, self.tar_zstd(folder, target, exclude_git), outputs=(target,)
        )

    def tar_zstd(
        self, folder: Path, target: Path, exclude_git: bool = False
    ) -> list[str]:
        exclude = "--exclude=.git " if exclude_git else ""
        pipeline = (
            f"tar -chf - {exclude}-C {shlex.quote(str(folder.parent))} "
            f"{shlex.quote(folder.name)} | zstd -q -T0 -3 -f -o {shlex.quote(str(target))}"
        )
        return ["sh", "-c", pipeline]

    def checkpoint(self, gib: int) -> Path:
        folder = self.data / f"bf16-{gib}g"
        subprocess.run(
            [
                sys.executable,
                str(HERE / "generate.py"),
                "subset",
                str(self.data / "bf16"),
                str(folder),
                "--gib",
                str(gib),
            ],
            check=True,
        )
        return folder

    def record(self, name: str, commands: list[Command], note: str = "") -> None:
        self.results["groups"][name] = {
            "note": note,
            "commands": [
                {
                    "label": c.label,
                    "command": c.shell(),
                    "wall": median(c, "wall"),
                    "cpu": median(c, "cpu"),
                    "rss_mb": max(s["rss_mb"] for s in c.samples),
                    "loads": [s["load"] for s in c.samples],
                    "walls": [s["wall"] for s in c.samples],
                }
                for c in commands
            ],
        }

    def size_of(self, label: str, path: Path) -> None:
        self.results["sizes"][label] = path.stat().st_size


def weights_group(bench: Bench, gib: int) -> None:
    model = bench.checkpoint(gib)
    name = f"bf16-{gib}g"
    base = bench.out / f"{name}.tar.zst"
    extracted = bench.out / "extracted"
    restored = bench.out / "restored"
    print(f"checkpoint of {gib} GiB: capture", file=sys.stderr)
    capture = [
        bench.capture_command("goldmaster capture", model, name),
        bench.capture_command(
            "goldmaster capture --level 3", model, name + "-l3", "--level", "3"
        ),
        bench.capture_command(
            "goldmaster capture --codec bytegroup",
            model,
            name + "-bg",
            "--codec",
            "bytegroup",
        ),
        bench.tar_command("tar -c | zstd -T0 -3", model, base),
        Command(
            "tar -c | zstd -T0 -3, then sync the file",
            ["sh", "-c", f"{shlex.join(bench.tar_zstd(model, base))} && sync {base}"],
            outputs=(base,),
        ),
        Command("sha256sum of the inputs", ["sh", "-c", f"sha256sum {model}/*"]),
    ]
    run_group(capture, bench.runs)
    bench.record(
        "capture", capture, f"{gib} GiB bf16 safetensors checkpoint, {gib} shards"
    )
    bundle = bench.bundle(name)
    for label, path in [
        ("goldmaster capture", bundle),
        ("goldmaster capture --level 3", bench.bundle(name + "-l3")),
        ("goldmaster capture --codec bytegroup", bench.bundle(name + "-bg")),
        ("tar -c | zstd -T0 -3", base),
    ]:
        bench.size_of(label, path)
    bench.results["input_bytes"] = sum(
        p.stat().st_size for p in model.iterdir() if p.is_file()
    )

    print("verify", file=sys.stderr)
    verify = [
        Command("goldmaster verify", [bench.gm, "verify", str(bundle)]),
        Command(
            "goldmaster verify (bytegroup bundle)",
            [bench.gm, "verify", str(bench.bundle(name + "-bg"))],
        ),
        Command("zstd -dc | sha256sum", ["sh", "-c", f"zstd -dc {bundle} | sha256sum"]),
    ]
    run_group(verify, bench.runs)
    bench.record("verify", verify, "the default bundle of the capture group")

    print("restore", file=sys.stderr)
    top = f"{name}-1"
    extract = f"zstd -dc {bundle} | tar -x -C {extracted}"
    restore = [
        Command(
            "goldmaster restore",
            [bench.gm, "restore", str(bundle), str(restored / "d"), "--no-env", "-q"],
            fresh=restored,
        ),
        Command(
            "goldmaster restore (bytegroup bundle)",
            [
                bench.gm,
                "restore",
                str(bench.bundle(name + "-bg")),
                str(restored / "d"),
                "--no-env",
                "-q",
            ],
            fresh=restored,
        ),
        Command("zstd -dc | tar -x", ["sh", "-c", extract], fresh=extracted),
        Command(
            "zstd -dc | tar -x, then sha256sum -c",
            [
                "sh",
                "-c",
                f"{extract} && cd {extracted}/{top} && sha256sum -c --quiet SHA256SUMS",
            ],
            fresh=extracted,
        ),
    ]
    run_group(restore, bench.runs)
    bench.record("restore", restore, "into an empty folder on the same disk")
    shutil.rmtree(restored, ignore_errors=True)
    shutil.rmtree(extracted, ignore_errors=True)

    print("inspect", file=sys.stderr)
    inspect = [
        Command("goldmaster inspect", [bench.gm, "inspect", str(bundle)]),
        Command(
            "goldmaster inspect --json", [bench.gm, "inspect", "--json", str(bundle)]
        ),
        Command("python3 -c pass (interpreter start)", [sys.executable, "-c", "pass"]),
    ]
    run_group(inspect, max(bench.runs, 5))
    bench.record("inspect", inspect, "manifest of the default bundle")


def small_files_group(bench: Bench) -> None:
    code = bench.data / "code"
    tiny = bench.data / "tiny-model"
    tiny.mkdir(exist_ok=True)
    (tiny / "config.json").write_text('{"model_type": "none"}\n')
    print("20,000 small files", file=sys.stderr)
    commands = [
        bench.capture_command("goldmaster capture", tiny, "code", code=code),
        bench.capture_command(
            "goldmaster capture --text-level 9",
            tiny,
            "code-l9",
            "--text-level",
            "9",
            code=code,
        ),
        bench.tar_command(
            "tar -c | zstd -T0 -3", code, bench.out / "code.tar.zst", True
        ),
    ]
    run_group(commands, bench.runs)
    bench.record("small files", commands, "20,000 files in a git repository, 66 MB")
    for label, path in [
        ("small files: goldmaster capture", bench.bundle("code")),
        ("small files: goldmaster capture --text-level 9", bench.bundle("code-l9")),
        ("small files: tar -c | zstd -T0 -3", bench.out / "code.tar.zst"),
    ]:
        bench.size_of(label, path)


def other_models_group(bench: Bench) -> None:
    print("MiniLM and the fp32 checkpoint", file=sys.stderr)
    commands = []
    for name, folder in [
        ("minilm", bench.data / "minilm"),
        ("fp32", bench.data / "fp32"),
    ]:
        commands += [
            bench.capture_command(f"{name}: goldmaster capture", folder, name),
            bench.capture_command(
                f"{name}: goldmaster capture --codec bytegroup",
                folder,
                name + "-bg",
                "--codec",
                "bytegroup",
            ),
            bench.tar_command(
                f"{name}: tar -c | zstd -T0 -3", folder, bench.out / f"{name}.tar.zst"
            ),
        ]
    run_group(commands, bench.runs)
    bench.record(
        "other models",
        commands,
        "the MiniLM example model (fp32) and an fp32 checkpoint",
    )
    for name in ("minilm", "fp32"):
        bench.size_of(f"{name}: goldmaster capture", bench.bundle(name))
        bench.size_of(
            f"{name}: goldmaster capture --codec bytegroup", bench.bundle(name + "-bg")
        )
        bench.size_of(f"{name}: tar -c | zstd -T0 -3", bench.out / f"{name}.tar.zst")


def memory_series(bench: Bench, sizes: list[int]) -> None:
    for gib in sizes:
        model = bench.checkpoint(gib)
        name = f"mem-{gib}g"
        restored = bench.out / "restored"
        print(f"peak memory at {gib} GiB", file=sys.stderr)
        steps = [
            Command("capture", bench.capture(model, name)),
            Command("verify", [bench.gm, "verify", str(bench.bundle(name))]),
            Command(
                "restore",
                [
                    bench.gm,
                    "restore",
                    str(bench.bundle(name)),
                    str(restored / "d"),
                    "--no-env",
                    "-q",
                ],
                fresh=restored,
            ),
        ]
        row: dict[str, Any] = {"gib": gib}
        for step in steps:
            sample = run_once(step)
            row[step.label] = {"rss_mb": sample["rss_mb"], "wall": sample["wall"]}
        bench.results["memory"].append(row)
        shutil.rmtree(restored, ignore_errors=True)
        bench.bundle(name).unlink()
        bench.bundle(name).with_name(bench.bundle(name).name + ".sha256").unlink()


def profile(bench: Bench, gib: int) -> None:
    print("phase timers", file=sys.stderr)
    model = bench.checkpoint(gib)
    for label, extra in [("bf16", []), ("small files", [])]:
        target = model if label == "bf16" else bench.data / "tiny-model"
        code = bench.empty_code if label == "bf16" else bench.data / "code"
        report = bench.out / f"phases-{label.replace(' ', '-')}.json"
        subprocess.run(["sync"], check=True)
        subprocess.run(
            [
                sys.executable,
                str(HERE / "profile_capture.py"),
                str(target),
                "--code",
                str(code),
                "--output",
                str(bench.out / "profile"),
                "--json",
                str(report),
                *extra,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        bench.results.setdefault("phases", {})[label] = json.loads(report.read_text())
    shutil.rmtree(bench.out / "profile", ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size-gb", type=int, required=True)
    parser.add_argument("--memory-sizes", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--goldmaster", required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--command", default="make -C benchmarks")
    args = parser.parse_args()

    bench = Bench(args)
    bench.out.mkdir(parents=True, exist_ok=True)
    bench.results["machine"] = describe_machine()
    bench.results["command"] = args.command
    bench.results["root"] = str(HERE.parent)
    bench.results["started"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    weights_group(bench, args.size_gb)
    small_files_group(bench)
    other_models_group(bench)
    profile(bench, args.size_gb)
    memory_series(bench, [int(size) for size in args.memory_sizes.split()])
    bench.results["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    levels = bench.out / "compression.json"
    if levels.exists():
        bench.results["compression"] = json.loads(levels.read_text())

    (bench.out / "results.json").write_text(json.dumps(bench.results, indent=2) + "\n")
    from report import render, replace_block

    replace_block(args.report, render(bench.results))
    print(f"wrote {args.report}", file=sys.stderr)


if __name__ == "__main__":
    main()
