"""`convsweep validate FILE` for every sweep file in experiments/: wall seconds and peak memory per file.

Each file is validated in a fresh interpreter (as a user runs it), with its data roots pointing at empty
folders in each dataset's on-disk layout (validation checks names, never decodes a file), so every check
runs, the data-root one included. Printed per file: wall seconds, peak RSS in MB, and whether torch, MLflow
or Ray were imported (none of them should be: goal under 2 s and well under 1 GB on an idle core).

Run:  cd /work/main && .venv/bin/python tests/bench/bench_validate.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 2.0
REPO = Path(__file__).resolve().parents[2]
_PROBE = ("import sys; from orchestrator.cli import main; code = main(sys.argv[1:]); "
          "print('heavy:', ','.join(m for m in ('torch', 'mlflow', 'ray') if m in sys.modules) or '-'); "
          "sys.exit(code)")


def data_roots(base: Path) -> dict[str, str]:
    """Empty files in each dataset's layout, keyed by the environment variable the paper profiles read."""
    from pipelines.readers.arrays import CIFAR_FILES, IDX_FILES

    def touch(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")

    touch(base / "imagenet" / "train" / "n01440764" / "a.JPEG")
    touch(base / "imagenet" / "val" / "n01440764" / "a.JPEG")
    (base / "tiny" / "train" / "n01443537" / "images").mkdir(parents=True)
    touch(base / "tiny" / "val" / "val_annotations.txt")
    (base / "tiny" / "val" / "images").mkdir()
    for name in ("cifar10", "cifar100"):
        _, train, test, meta, _, _ = CIFAR_FILES[name]
        for f in [*train, *test, meta]:
            touch(base / name / f)
    for name in ("mnist", "fashion-mnist"):
        for f in (f for pair in IDX_FILES.values() for f in pair):
            touch(base / name / f)
    touch(base / "clutter" / "mnist_cluttered_60.npz")
    touch(base / "lfw_home" / "lfw_funneled" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg")
    roots = {"IMAGENET_ROOT": "imagenet", "TINY_IMAGENET_ROOT": "tiny", "CIFAR10_ROOT": "cifar10",
             "CIFAR100_ROOT": "cifar100", "MNIST_ROOT": "mnist", "FASHION_MNIST_ROOT": "fashion-mnist",
             "MNIST_CLUTTERED_ROOT": "clutter", "LFW_ROOT": "lfw_home"}
    return {var: str(base / folder) for var, folder in roots.items()}


def measure(sweep_file: Path, env: dict[str, str]) -> tuple[float, float, float, int, str]:
    """(wall s, CPU s, peak RSS MB, exit code, last output line) of one `convsweep validate` process.

    CPU seconds (user + system) are what the wall time is on an idle core, whatever else the machine runs."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _PROBE, "validate", str(sweep_file)], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out = proc.stdout.read().strip().splitlines() if proc.stdout else []
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), " | ".join(out[-2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per file; the fastest is reported")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        env.update(data_roots(Path(tmp) / "data"))
        print(f"{'file':<36} {'wall s':>7} {'CPU s':>6} {'MB':>5}  exit  output")
        worst = 0.0
        for path in sorted((REPO / "experiments").glob("*.yaml")):
            runs = [measure(path, env) for _ in range(args.repeat)]
            wall, cpu, mb, code, line = min(runs)
            worst = max(worst, cpu)
            print(f"{path.name:<36} {wall:7.2f} {cpu:6.2f} {mb:5.0f}  {code:>4}  {line}")
        print(f"slowest: {worst:.2f} CPU s (goal < {GOAL_SECONDS} s on an idle core); load average now "
              f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
