"""Benchmark: every speed figure of the pipeline in one table (docs/performance.md).

    python benchmarks/performance.py [--runs 3] [--train-runs 5] [--sizes 1e3,1e4,1e5,1e6]
                                     [--only pipeline tracking loop scaling]

Works in temporary copies of the repository (their own MLflow store and DVC cache), so the
workspace and your tracking store are untouched. Takes about 15 minutes on 2 CPU cores.

Figures, each a median over --runs (stage and training runs over --train-runs):
  - cold `dvc repro -s STAGE` per stage on defaults, and the heavy modules each stage loaded
  - no-op `dvc repro` against `dvc status`; an evaluate-only rerun against the cold total
  - the Lightning loop against a plain PyTorch loop at batch 64 (benchmarks/loop_overhead.py)
  - time per epoch for 1e3..1e6 training rows (fitted exponent, cost per row), peak memory of
    the train stage, generate and evaluate wall time at the largest size
  - what MLflow tracking costs the train stage on defaults (tracking.enabled true vs false)
  - the device training ran on
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.loop_overhead import compare, default_params, lightning_epoch_seconds, splits
from tests.conftest import copy_repo, dvc, edit_params, tool_env

# The tune stage (a no-op unless tune.enabled) writes the result lr_find and train read.
STAGES = ("generate", "tune", "lr_find", "train", "evaluate")
SECTIONS = ("pipeline", "tracking", "loop", "scaling")
HEAVY = ("torch", "pytorch_lightning", "mlflow", "matplotlib")
TRAIN_SHARE = 0.6  # generate's default split: 60 % of the rows train

# Loaded through PYTHONPATH into every Python process the pipeline starts; stage scripts
# append the heavy modules they imported to $DEEPNORMAL_IMPORT_LOG when they exit.
IMPORT_PROBE = f'''
import atexit, os, sys

def _report():
    script = sys.argv[0] if sys.argv else ""
    if "stages" in script:
        loaded = [m for m in {HEAVY!r} if m in sys.modules]
        with open(os.environ["DEEPNORMAL_IMPORT_LOG"], "a") as log:
            log.write(os.path.basename(script)[:-3] + "\\t" + ",".join(loaded) + "\\n")

atexit.register(_report)
'''

rows: list[tuple[str, str, str, str]] = []  # figure, value, target, command


def record(figure: str, value: str, target: str = "", command: str = "") -> None:
    rows.append((figure, value, target, command))
    print(f"  {figure}: {value}", flush=True)


def timed(*args: str, cwd: Path, **env: str) -> float:
    start = time.perf_counter()
    dvc(*args, cwd=cwd, **env)
    return time.perf_counter() - start


def stage_script(root: Path, stage: str, **env: str) -> tuple[float, float]:
    """Run one stage script directly: (wall seconds, peak resident memory in MB)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, f"stages/{stage}.py"], cwd=root,
                               env=tool_env(**env), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"stage {stage} failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def pipeline_figures(root: Path, runs: int) -> float:
    print("pipeline on defaults", flush=True)
    probe = root.parent / "probe"
    probe.mkdir()
    (probe / "sitecustomize.py").write_text(IMPORT_PROBE)
    log = root.parent / "imports.log"
    env = {"PYTHONPATH": str(probe), "DEEPNORMAL_IMPORT_LOG": str(log)}
    total = 0.0
    for stage in STAGES:
        seconds = timed("repro", "-s", stage, cwd=root, **env)
        total += seconds
        loaded = sorted({module for line in log.read_text().splitlines()
                         if line.split("\t")[0] == stage
                         for module in line.split("\t")[1].split(",") if module},
                        key=HEAVY.index)
        loaded = ",".join(loaded)
        record(f"cold `dvc repro -s {stage}`", f"{seconds:.1f} s",
               command=f"imports: {loaded.replace(',', ', ') or 'none of ' + '/'.join(HEAVY)}")
    record("cold pipeline, all five stages", f"{total:.1f} s")

    noop = statistics.median(timed("repro", cwd=root) for _ in range(runs))
    status = statistics.median(timed("status", cwd=root) for _ in range(runs))
    record("no-op `dvc repro`", f"{noop:.1f} s", f"<= dvc status + 1 s = {status + 1:.1f} s",
           f"`dvc status`: {status:.1f} s")

    evaluate_only = []
    for points in [4000, 5000] * runs:
        edit_params(root, {"evaluate": {"plot_max_points": points}})
        evaluate_only.append(timed("repro", cwd=root))
    median = statistics.median(evaluate_only[1:])  # the first edit changes from the default
    record("evaluate-only rerun (edit evaluate.plot_max_points)",
           f"{median:.1f} s = {100 * median / total:.0f} % of cold", "<= 30 %")
    return total


def tracking_figures(root: Path, runs: int) -> None:
    print("tracking cost, train stage on defaults", flush=True)
    walls = {True: [], False: []}
    for _ in range(runs):
        for enabled in (True, False):
            edit_params(root, {"tracking": {"enabled": enabled}})
            walls[enabled].append(stage_script(root, "train")[0])
    edit_params(root, {"tracking": {"enabled": True}})
    on, off = statistics.median(walls[True]), statistics.median(walls[False])
    each = " / ".join(", ".join(f"{wall:.1f}" for wall in walls[key]) for key in (True, False))
    record("train stage, tracking on / off", f"{on:.1f} s / {off:.1f} s",
           command=f"tracking.enabled true / false; single runs {each} s")
    record("MLflow's share of the train stage", f"{100 * (on - off) / on:.1f} %", "<= 10 %")
    summary = json.loads((root / "data/train/summary.json").read_text())
    record("device training ran on", summary["device"], "a GPU when present",
           "compute.accelerator: auto")


def loop_figures(runs: int) -> None:
    print("training loop overhead", flush=True)
    found = compare(batch_size=64, epochs=30, runs=max(5 * runs, 15))
    ratio = found["ratio"]
    low, high = found["run_ratios"]
    record(f"epoch at batch 64 ({found['steps']} steps, {found['threads']} threads), "
           "Lightning / plain PyTorch",
           f"{found['lightning_ms']:.1f} / {found['plain_ms']:.1f} ms = {ratio:.2f}", "",
           f"python benchmarks/loop_overhead.py (single runs {low:.2f}..{high:.2f})")


def scaling_figures(sizes: list[int], runs: int, workdir: Path) -> None:
    import numpy as np

    print("scaling with training rows", flush=True)
    seconds = []
    for n in sizes:
        train, val = splits(n)
        # Epochs after the first, more of them where they are quick.
        epochs = 3 if n >= 1e6 else 5 if n >= 1e5 else 3 + 2 * runs
        per = statistics.median(
            lightning_epoch_seconds(default_params(256, epochs), train, val, 3e-3))
        seconds.append(per)
        record(f"epoch time, {n:.0e} training rows (batch 256)", f"{per:.3f} s",
               command=f"{1e6 * per / n:.2f} us per row")
    slope = np.polyfit(np.log(sizes[1:]), np.log(seconds[1:]), 1)[0]
    record(f"fitted exponent, epoch time ~ n^k over {sizes[1]:.0e}..{sizes[-1]:.0e}",
           f"k = {slope:.2f}", "about 1")

    largest = sizes[-1]
    root = copy_repo(workdir / "large")
    edit_params(root, {"generate": {"n": round(largest / TRAIN_SHARE)},
                       "train": {"max_epochs": 1}, "lr_find": {"fixed_lr": 3e-3}})
    wall, _ = stage_script(root, "generate")
    record(f"generate stage, {largest:.0e} training rows", f"{wall:.1f} s", "< 10 s",
           f"generate.n = {round(largest / TRAIN_SHARE)}, python stages/generate.py")
    stage_script(root, "lr_find")
    wall, peak = stage_script(root, "train")
    record(f"train stage peak memory, {largest:.0e} rows, 1 epoch", f"{peak:.0f} MB",
           "< 2048 MB", f"wall {wall:.1f} s, python stages/train.py")
    wall, _ = stage_script(root, "evaluate")
    with open(root / "data/prepared/test.csv") as table:
        test_rows = sum(1 for _ in table) - 1
    record(f"evaluate stage, {test_rows} test rows scored", f"{wall:.1f} s",
           command="plots draw evaluate.plot_max_points of them")


def print_table(machine: str) -> None:
    print(f"\n{machine}\n")
    print("| figure | value | target | how |")
    print("|---|---|---|---|")
    for figure, value, target, command in rows:
        print(f"| {figure} | {value} | {target} | {command} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of the quick figures")
    parser.add_argument("--train-runs", type=int, default=5,
                        help="repetitions of the default train stage, tracking on and off")
    parser.add_argument("--sizes", default="1e3,1e4,1e5,1e6",
                        help="training rows for the scaling figures (comma list)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="measure only these groups of figures (default: all)")
    args = parser.parse_args()
    sizes = [int(float(size)) for size in args.sizes.split(",")]

    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    machine = (f"{platform.node()}: {os.cpu_count()} CPUs, {device}, torch {torch.__version__}, "
               f"{time.strftime('%Y-%m-%d')}; command: python benchmarks/performance.py "
               f"--runs {args.runs} --train-runs {args.train_runs} --sizes {args.sizes} "
               f"--only {' '.join(args.only)}")
    with tempfile.TemporaryDirectory(prefix="deepnormal-perf-") as tmp:
        root = copy_repo(Path(tmp) / "repo")
        if "pipeline" in args.only:
            pipeline_figures(root, args.runs)
        if "tracking" in args.only:
            if "pipeline" not in args.only:  # the inputs, and a store that exists already
                dvc("repro", "train", cwd=root)
            tracking_figures(root, args.train_runs)
        if "loop" in args.only:
            loop_figures(args.runs)
        if "scaling" in args.only:
            scaling_figures(sizes, args.runs, Path(tmp))
    print_table(machine)


if __name__ == "__main__":
    main()
