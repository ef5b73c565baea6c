"""Benchmark: every speed figure of the pipeline in one table (docs/performance.md).

    python -m benchmarks.performance [--runs 3] [--train-runs 5] [--sizes 1e3,1e4,1e5,1e6]
                                     [--tables cpssw8]
                                     [--only pipeline tracking loop scaling]

Works in temporary copies of the repository (their own MLflow store and DVC cache), so the
workspace and your tracking store are untouched. Takes about 15 minutes on 2 CPU cores.

Figures, each a median over --runs (stage and training runs over --train-runs):
  - cold `dvc repro -s STAGE` per stage on defaults, and the heavy modules each stage loaded
  - no-op `dvc repro` against `dvc status`; an evaluate-only rerun against the cold total
  - the Lightning loop against a plain PyTorch loop at batch 64 (benchmarks/loop_overhead.py)
  - scaling: cold `dvc repro` wall time and peak memory on a synthetic 8-feature
    heteroscedastic table of 1e3..1e6 rows (--sizes; --runs tables drawn with data seeds
    0, 1, ..., one at 1e6), its test NLL against
    the oracle's, CatBoost's fit time and NLL on the same splits (the `peers` extra), the
    growth exponent, and the largest table on the GPU when there is one; then the same on
    real tables (--tables, default cpssw8: 61k hourly earnings), beside the better of
    CatBoost on y and on log y, with the fit's anytime curve (validation NLL against seconds)
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

from benchmarks.common import scored_peer
from benchmarks.loop_overhead import compare
from benchmarks.workspace import copy_repo, dvc, edit_params, tool_env

# The tune stage (a no-op unless tune.enabled) writes the result lr_find and train read.
STAGES = ("generate", "tune", "lr_find", "train", "evaluate")
SECTIONS = ("pipeline", "tracking", "loop", "scaling")
HEAVY = ("torch", "pytorch_lightning", "mlflow", "matplotlib")

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
           f"python -m benchmarks.loop_overhead (single runs {low:.2f}..{high:.2f})")


FEATURES = [f"x{i}" for i in range(8)]


def heteroscedastic_table(n: int, seed: int = 0):
    """n rows of a synthetic table with 8 numeric features, a known mean and a known noise
    scale (Friedman's #1 mean, a noise scale driven by three features; x7 is pure noise), and
    the true (mu, sigma) per row, for the oracle's NLL."""
    import numpy as np
    import pandas as pd

    x = np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, len(FEATURES)))
    mu, sigma = true_distribution(x)
    y = mu + sigma * np.random.default_rng([seed, 1]).standard_normal(n)
    return pd.DataFrame(x, columns=FEATURES).assign(y=y)


def true_distribution(x):
    import numpy as np

    mu = (10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3]
          + 5 * x[:, 4])
    sigma = 0.3 + 2 * x[:, 5] * x[:, 6] + 0.5 * (1 + np.sin(2 * np.pi * x[:, 0]))
    return mu, sigma


def cold_repro(root: Path) -> tuple[float, float]:
    """A cold `dvc repro`: (wall seconds, peak resident memory in MB of any one of its
    processes: Linux reports the largest of dvc and every stage it waited for)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=root, env=tool_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"dvc repro failed: {process.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def scaling_run(n: int, root: Path, seed: int = 0, accelerator: str = "auto") -> dict:
    """One cold pipeline on an n-row table drawn with `seed`, then CatBoost on the very same
    splits."""
    import numpy as np
    from scipy import stats

    from deepnormal.prepared import read_splits

    heteroscedastic_table(n, seed).to_parquet(root / "scaling.parquet")
    edit_params(root, {"data": {"source": "file", "path": "scaling.parquet", "target": "y",
                                "features": FEATURES},
                       "compute": {"accelerator": accelerator}})
    seconds, peak = cold_repro(root)
    metrics = json.loads((root / "data/evaluate/metrics.json").read_text())
    summary = json.loads((root / "data/train/summary.json").read_text())
    splits = read_splits(root / "data/prepared")
    test = splits["test"]
    mu, sigma = true_distribution(test.frame[FEATURES].to_numpy())
    oracle = -float(np.mean(stats.norm.logpdf(test.target, mu, sigma)))
    peer = scored_peer("catboost", splits)
    return {"seconds": seconds, "peak_mb": peak, "nll": metrics["test"]["model"]["nll"],
            "oracle": oracle, "catboost_nll": peer.nll, "catboost_seconds": peer.seconds,
            "train_rows": len(splits["train"]), "budget": summary["budget"],
            "epochs_run": summary["epochs_run"], "device": summary["device"]}


def real_table_run(name: str, root: Path, seed: int) -> dict:
    """One cold pipeline on a benchmark table (benchmarks/common.py) with split `seed`, then
    CatBoost (on y, and on log y for a positive target) on the very same splits, and the
    anytime curve of the fit: its validation NLL against seconds since the fit began, read
    from the run's MLflow metric timestamps."""
    from benchmarks.common import table_overrides
    from deepnormal.prepared import read_splits

    data = {key.split(".", 1)[1]: value for key, value in table_overrides(name).items()}
    edit_params(root, {"data": data, "generate": {"seed": seed}})
    seconds, peak = cold_repro(root)
    metrics = json.loads((root / "data/evaluate/metrics.json").read_text())
    summary = json.loads((root / "data/train/summary.json").read_text())
    splits = read_splits(root / "data/prepared")
    peers = {"CatBoost": scored_peer("catboost", splits)}
    if (splits["train"].target > 0).all():
        peers["CatBoost log(y)"] = scored_peer("catboost", splits, "lognormal")
    best = min(peers, key=lambda p: peers[p].nll)
    return {"seconds": seconds, "peak_mb": peak, "nll": metrics["test"]["model"]["nll"],
            "family": metrics["family"], "peer": best, "peer_nll": peers[best].nll,
            "catboost_seconds": peers["CatBoost"].seconds, "train_rows": len(splits["train"]),
            "budget": summary["budget"], "epochs_run": summary["epochs_run"], "lr": summary["lr"],
            "curve": anytime_curve(root, summary["run_id"])}


def anytime_curve(root: Path, run_id: str) -> list[tuple[float, float]]:
    """(seconds since the first epoch's end, validation NLL of the kept members) per epoch,
    from the tracking store of the copy at `root`; the fit whose curve spans the most time
    (with a family trial the kept family's unprefixed curve is logged after the fact)."""
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    keys = [key for key in client.get_run(run_id).data.metrics if key.endswith("val_nll_kept")]
    curves = []
    for key in keys:
        history = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
        start = history[0].timestamp
        curves.append([((m.timestamp - start) / 1000, m.value) for m in history])
    return max(curves, key=lambda c: c[-1][0])


def real_table_figures(names: list[str], runs: int, workdir: Path) -> None:
    """Cold `dvc repro` on real benchmark tables, CatBoost beside it, and the anytime curve."""
    for name in names:
        found = []
        for run in range(runs):
            found.append(real_table_run(name, copy_repo(workdir / f"table-{name}-{run}"), run))
            print(f"    {name}, split {run}: " + json.dumps(
                {k: v for k, v in found[-1].items() if k != "curve"}), flush=True)
        median = {key: statistics.median(f[key] for f in found)
                  for key in ("seconds", "peak_mb", "nll", "peer_nll", "catboost_seconds")}
        plan = found[0]["budget"]
        lrs = "/".join(f"{f['lr']:.2g}" for f in found)
        record(f"cold `dvc repro`, {name} ({found[0]['train_rows']:,} train rows)",
               f"{median['seconds']:.0f} s, peak {median['peak_mb']:.0f} MB; "
               f"{median['seconds'] / median['catboost_seconds']:.0f}x CatBoost's fit",
               "<= 15x CatBoost (moonshot 5x)",
               f"{len(found)} split(s); batch {plan['batch_size']:,}, lr "
               f"{lrs}, epochs run "
               f"{'/'.join(str(f['epochs_run']) for f in found)} of {plan['max_epochs']}")
        margins = ", ".join(f"{f['nll'] - f['peer_nll']:+.3f}" for f in found)
        record(f"test NLL, {name}: model / best CatBoost",
               f"{median['nll']:.3f} / {median['peer_nll']:.3f}",
               "model <= CatBoost - 0.05",
               f"per split: {margins}; CatBoost fit {median['catboost_seconds']:.1f} s")
        curve = found[0]["curve"]
        final = curve[-1][1]
        marks = []
        for share in (0.1, 0.25, 0.5, 0.75, 1.0):
            t, value = next(p for p in curve if p[0] >= share * curve[-1][0])
            marks.append(f"{t:.0f} s: {value - final:+.3f}")
        record(f"anytime curve, {name} split 0: validation NLL of the kept members against "
               "the fit's seconds, minus its last value", "; ".join(marks), "",
               f"CatBoost's whole fit: {found[0]['catboost_seconds']:.1f} s")


def scaling_figures(sizes: list[int], runs: int, workdir: Path) -> None:
    """Cold `dvc repro` on a synthetic 8-feature table of each size, CatBoost beside it."""
    import numpy as np

    try:
        import catboost  # noqa: F401
    except ImportError:
        raise SystemExit("--only scaling needs CatBoost: pip install -e '.[peers]'") from None
    print("scaling: cold dvc repro on a synthetic 8-feature table, CatBoost beside it",
          flush=True)
    medians = []
    for n in sizes:
        found = []
        # Each run a fresh table (data seed = run): the NLLs are medians over tables too.
        for run in range(runs if n <= 100_000 else 1):  # a million rows: one run
            found.append(scaling_run(n, copy_repo(workdir / f"scaling-{n}-{run}"), seed=run))
            print(f"    {n:.0e} rows, run {run + 1}: {json.dumps(found[-1])}", flush=True)
        median = {key: statistics.median(f[key] for f in found)
                  for key in ("seconds", "peak_mb", "nll", "oracle", "catboost_nll",
                              "catboost_seconds")}
        medians.append(median["seconds"])
        plan = found[0]["budget"]
        ratio = median["seconds"] / median["catboost_seconds"]
        record(f"cold `dvc repro`, {n:,} rows ({found[0]['train_rows']:,} train)",
               f"{median['seconds']:.0f} s, peak {median['peak_mb']:.0f} MB; "
               f"{ratio:.0f}x CatBoost's fit",
               "<= 20 min, <= 4096 MB" if n >= 1_000_000 else
               "<= 25x CatBoost" if 30_000 <= n <= 100_000 else "",
               f"{len(found)} run(s); batch {plan['batch_size']:,}, "
               f"{plan['steps_per_epoch']} steps an epoch, epochs run "
               f"{'/'.join(str(f['epochs_run']) for f in found)} of {plan['max_epochs']}")
        margins = ", ".join(f"{f['nll'] - f['catboost_nll']:+.4f}" for f in found)
        record(f"test NLL, {n:,} rows: model / CatBoost / oracle",
               f"{median['nll']:.4f} / {median['catboost_nll']:.4f} / {median['oracle']:.4f}",
               "model <= CatBoost + 0.01" if n >= 30_000 else "",
               f"model - CatBoost per table: {margins}; CatBoost RMSEWithUncertainty fit "
               f"{median['catboost_seconds']:.1f} s (early stopping on val)")
    if not sizes:
        return
    large = [i for i, n in enumerate(sizes) if n >= 10_000]
    if len(large) >= 2:
        slope = np.polyfit(np.log([sizes[i] for i in large]),
                           np.log([medians[i] for i in large]), 1)[0]
        record(f"growth exponent, cold repro time ~ n^k over {sizes[large[0]]:,}.."
               f"{sizes[large[-1]]:,} rows", f"k = {slope:.2f}")
    import torch

    if torch.cuda.is_available():
        n = sizes[-1]
        found = scaling_run(n, copy_repo(workdir / "scaling-gpu"), seed=0, accelerator="gpu")
        record(f"cold `dvc repro`, {n:,} rows on {found['device']}",
               f"{found['seconds']:.0f} s, test NLL {found['nll']:.4f}")


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
    parser.add_argument("--sizes", default="1e3,1e4,5e4,1e5,1e6",
                        help="table rows for the scaling figures (comma list)")
    parser.add_argument("--tables", nargs="*", default=["cpssw8"],
                        help="real benchmark tables (benchmarks/common.py) for the scaling "
                             "figures, beside the synthetic one")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="measure only these groups of figures (default: all)")
    args = parser.parse_args()
    sizes = [int(float(size)) for size in args.sizes.split(",") if size]

    import platform

    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    machine = (f"{platform.node()}: {os.cpu_count()} CPUs, {device}, torch {torch.__version__}, "
               f"{time.strftime('%Y-%m-%d')}; command: python -m benchmarks.performance "
               f"--runs {args.runs} --train-runs {args.train_runs} --sizes {args.sizes} "
               f"--only {' '.join(args.only)} --tables {' '.join(args.tables)}")
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
            real_table_figures(args.tables, args.runs, Path(tmp))
    print_table(machine)


if __name__ == "__main__":
    main()
