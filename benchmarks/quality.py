"""Benchmark: how good the default model is, on the reference problem and on real tables.

    python -m benchmarks.quality [--quick] [--only reference tables as-they-come peers
                                 fresh-seeds] [--data-seeds N ...]
                                 [--tables NAME ...] [--ensemble-only]
                                 [--set section.key=value]

Every fit runs in this process through the library the stages use, on the splits the
generate stage would write (written and read back as Parquet): the lr_find stage's range test and
rule, the train stage's fit on the real Lightning Trainer, evaluate's scores. Params are
params.yaml's, with any --set on top.

Reference problem (the default data set, where the true distribution is known):
  - data seeds 0-4 with train seed 0: test NLL, the oracle's, the gap, 95% coverage;
  - train seeds 0-4 on data seed 0: the spread (max - min) of the gap;
  - data seed 0 again in a child process with torch's CPU kernels forced to the baseline
    instruction set (ATEN_CPU_CAPABILITY=default), standing in for another machine.
Real tables (examples/): diabetes, engel, wage, five random splits each (generate.seed 0-4),
each trained with train seeds 0-2 (a table's early stopping acts within tens of epochs, so
one seed's luck would decide a comparison): the default model, the same recipe as a single
network (model.ensemble_size=1) and the homoscedastic line; test NLL (and the exact mixture
NLL), 95% coverage, the worst fit against its split's line.
Tables as they come (examples/ wage, hitters, carseats: text and yes/no columns, empty cells):
all columns against the numeric ones alone, on the skewed positive targets (wage, hitters'
salaries) model.distribution lognormal against normal, and on wage one-hot categories (every
column has at most model.embedding_dim codes) against 2-d learned embeddings; 5 splits x 3
train seeds.
Peers (the side-by-side): nine real tables, five chosen on (diabetes, engel, wage, hitters,
carseats: every default was weighed there) and four held out (auto, credit, college,
bikeshare: only reported), five splits each; NGBoost and CatBoost (src/deepnormal/peers.py,
the peers extra) fitted on each split, the default ensemble and a single network with train
seeds 0-2 (bikeshare: 0), the line; test NLL, CRPS, 95% coverage, fit seconds and the ratio to
CatBoost's, and who wins each table (by NLL; by CRPS where the ensemble chose a point mass
on some split, whose NLL, marked (p), is partly of probabilities). --tables picks tables,
--ensemble-only skips the single network (to weigh a lever with --set).
Fresh seeds (--only fresh-seeds --data-seeds N ...): the reference problem on data seeds
nobody chose anything on, its mean and worst gap.
Then one summary against the targets. About 65 minutes on our 2-core machines (the peers
section 25); --quick (data seeds 0-1, train seeds 0-1, two splits and one train seed per
table, no child process) about 6.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from benchmarks.common import (
    CHOSEN_ON,
    PEERS,
    REPORTED,
    TABLES,
    params_for,
    prepared_splits,
    print_rows,
    scored_peer,
    table_overrides,
)

# The tables of the "tables" section: the first three ever measured.
TABLE_SECTION = ("diabetes", "engel", "wage")
# Tables with text or yes/no columns (and, for wage and hitters, a skewed positive target):
# "Your table as it comes" measures using those columns against dropping them, and the
# log-normal family against the normal one.
TEXT_TABLES = ("wage", "hitters", "carseats")
SKEWED = ("wage", "hitters")
LARGE = ("bikeshare",)  # one train seed in the side-by-side
LEVELS = [0.5, 0.8, 0.95]
TARGETS = {
    "reference mean gap": 0.08, "reference worst gap": 0.12, "train-seed spread": 0.04,
    "kernel-set difference": 0.04, "coverage low": 0.93, "coverage high": 0.97,
    "table margin": 0.05, "table coverage low": 0.90, "table coverage high": 0.98,
    "ensemble time ratio": 2.0, "swing": 0.3, "peer coverage low": 0.92,
    "peer coverage high": 0.97,
}


@dataclass
class Fit:
    """One pipeline run's figures."""

    problem: str
    data_seed: int
    train_seed: int
    ensemble_size: int
    lr: float
    epochs: int
    fit_seconds: float
    sigma_scale: float
    nll: float
    crps: float
    nll_uncalibrated: float
    mixture_nll: float
    coverage_95: float
    line_nll: float
    line_coverage_95: float
    # Largest change of the validation NLL between consecutive epochs after the first epoch
    # (the first is the descent from the initialisation).
    swing: float
    oracle_nll: float | None = None
    family: str = "normal"
    coverage_50: float = math.nan
    coverage_80: float = math.nan
    line_crps: float = math.nan
    trial: dict = field(default_factory=dict)  # family -> validation score, when tried

    @property
    def gap(self) -> float:
        return self.nll - self.oracle_nll


def run_pipeline(problem: str, overrides: dict[str, object], extra: dict[str, object]) -> Fit:
    """generate -> lr_find -> train -> evaluate for one problem, in this process."""
    from deepnormal.evaluation import evaluate
    from deepnormal.family_trial import fit_family
    from deepnormal.inference import load_model
    from deepnormal.prepared import TableDescription
    from deepnormal.training import find_lr

    params = params_for(extra | overrides)
    with tempfile.TemporaryDirectory(prefix="deepnormal-quality-") as tmp:
        splits = prepared_splits(params, Path(tmp))
        candidates = TableDescription.read(tmp).family.candidates
        start = time.perf_counter()
        quiet = io.StringIO()  # the stages' progress lines, the lr finder's progress bar
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            _, _, choice = find_lr(params, splits["train"])
            out = Path(tmp) / "out"
            out.mkdir()
            result, trial = fit_family(params, splits["train"], splits["val"], choice.lr, out,
                                       candidates, progress=lambda line: None)
        seconds = time.perf_counter() - start
        report = evaluate(load_model(result.checkpoint), splits, params, LEVELS).report
    test = report.test
    uncalibrated = test.get("model_uncalibrated", test["model"])
    curve = [row["val_nll"] for row in result.history]
    swing = max((abs(b - a) for a, b in zip(curve[1:], curve[2:], strict=False)), default=0.0)
    return Fit(problem, params.generate.seed, params.train.seed, params.model.ensemble_size,
               choice.lr, result.epochs_run, seconds, result.sigma_scale, test["model"]["nll"],
               test["model"]["crps"], uncalibrated["nll"], test["model"]["mixture_nll"],
               test["model"]["picp_95"],
               test["linear"]["nll"], test["linear"]["picp_95"], swing,
               test["oracle"]["nll"] if "oracle" in test else None,
               report.family, test["model"]["picp_50"], test["model"]["picp_80"],
               test["linear"]["crps"], {} if trial is None else trial.scores)


def in_child(overrides: dict[str, object], extra: dict[str, object], env: dict) -> Fit:
    """One reference run in a fresh process with extra environment (torch reads
    ATEN_CPU_CAPABILITY when it is imported)."""
    command = [sys.executable, "-m", "benchmarks.quality", "--child",
               json.dumps([overrides, extra])]
    result = subprocess.run(command, env=os.environ | env, capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    if result.returncode != 0:
        raise RuntimeError(f"child run failed:\n{result.stderr[-3000:]}")
    return Fit(**json.loads(result.stdout.strip().splitlines()[-1]))


def data_seed_fits(seeds: list[int], extra: dict) -> list[Fit]:
    """The reference problem on these data seeds (train seed 0), printed as one table."""
    fits = [run_pipeline("reference", {"generate.seed": s}, extra) for s in seeds]
    print_rows("Reference problem, data seeds (train seed 0)",
               ["data seed", "lr", "epochs", "fit s", "swing", "sigma scale", "test NLL",
                "uncalibrated", "mixture", "oracle", "gap", "cov95"],
               [[f.data_seed, f"{f.lr:.3g}", f.epochs, f"{f.fit_seconds:.0f}", f"{f.swing:.3f}",
                 f"{f.sigma_scale:.3f}", f"{f.nll:.4f}", f"{f.nll_uncalibrated:.4f}",
                 f"{f.mixture_nll:.4f}", f"{f.oracle_nll:.4f}", f"{f.gap:.4f}",
                 f"{f.coverage_95:.3f}"] for f in fits])
    return fits


def fresh_seeds(seeds: list[int], extra: dict) -> None:
    """The reference problem on data seeds nobody chose anything on (issue 33's check: mean
    gap <= 0.08, every seed <= 0.10)."""
    gaps = [f.gap for f in data_seed_fits(seeds, extra)]
    print(f"data seeds {', '.join(map(str, seeds))}: mean gap {statistics.mean(gaps):.4f} "
          f"(target <= 0.08), worst {max(gaps):.4f} (target <= 0.10)")


def reference(quick: bool, extra: dict) -> dict:
    seeds = [0, 1] if quick else [0, 1, 2, 3, 4]
    fits = data_seed_fits(seeds, extra)
    train_fits = [fits[0]] + [run_pipeline("reference", {"train.seed": s}, extra)
                              for s in seeds[1:]]
    print_rows("Reference problem, train seeds (data seed 0)",
               ["train seed", "lr", "epochs", "gap", "cov95"],
               [[f.train_seed, f"{f.lr:.3g}", f.epochs, f"{f.gap:.4f}", f"{f.coverage_95:.3f}"]
                for f in train_fits])
    machine = None if quick else in_child({}, extra, {"ATEN_CPU_CAPABILITY": "default"})
    if machine is not None:
        import torch

        print_rows("Reference problem, data seed 0, another CPU kernel set",
                   ["kernels", "epochs", "gap", "cov95"],
                   [[torch.backends.cpu.get_cpu_capability(), fits[0].epochs,
                     f"{fits[0].gap:.4f}", f"{fits[0].coverage_95:.3f}"],
                    ["default (forced)", machine.epochs, f"{machine.gap:.4f}",
                     f"{machine.coverage_95:.3f}"]])
    single = run_pipeline("reference", {"model.ensemble_size": 1}, extra)
    gaps = [f.gap for f in fits]
    spread = [f.gap for f in train_fits]
    return {
        "mean gap": statistics.mean(gaps), "worst gap": max(gaps),
        "coverage": (min(f.coverage_95 for f in fits), max(f.coverage_95 for f in fits)),
        "train-seed spread": max(spread) - min(spread),
        "kernel-set difference": None if machine is None else abs(machine.gap - fits[0].gap),
        "ensemble time ratio": fits[0].fit_seconds / single.fit_seconds,
        "swing": max(f.swing for f in fits),
        "single": single, "fits": fits,
    }


def tables(quick: bool, extra: dict) -> dict:
    """Each table: five splits x three train seeds, the default ensemble and one network."""
    splits, train_seeds = ([0, 1], [0]) if quick else ([0, 1, 2, 3, 4], [0, 1, 2])
    found = {}
    for name in TABLE_SECTION:
        fits = {}
        for members in ("default", 1):
            size = {} if members == "default" else {"model.ensemble_size": 1}
            fits[members] = [run_pipeline(name, table_overrides(name) | size |
                                          {"generate.seed": s, "train.seed": t}, extra)
                             for s in splits for t in train_seeds]
        rows = []
        for split in splits:
            default = [f for f in fits["default"] if f.data_seed == split]
            single = [f for f in fits[1] if f.data_seed == split]
            line = default[0].line_nll
            rows.append([split, f"{line:.3f}", f"{statistics.mean(f.nll for f in single):.3f}",
                         f"{statistics.mean(f.nll for f in default):.3f}",
                         f"{statistics.mean(f.mixture_nll for f in default):.3f}",
                         f"{max(f.nll for f in default) - line:+.3f}",
                         f"{default[0].line_coverage_95:.3f}",
                         f"{statistics.mean(f.coverage_95 for f in single):.3f}",
                         f"{statistics.mean(f.coverage_95 for f in default):.3f}",
                         round(statistics.mean(f.epochs for f in default))])
        size = fits["default"][0].ensemble_size
        print_rows(f"{name} ({TABLES[name].path}), random splits; model figures are means over "
                   f"train seeds {', '.join(map(str, train_seeds))}",
                   ["split", "line NLL", "single NLL", f"M={size} NLL", "mixture NLL",
                    "worst - line", "line cov95", "single cov95", f"M={size} cov95", "epochs"],
                   rows)
        found[name] = fits
    return found


def spread_text(fits: list[Fit], value=lambda f: f.nll) -> str:
    """mean, the sd of the split means, and the mean range over train seeds within a split."""
    by_split = {}
    for f in fits:
        by_split.setdefault(f.data_seed, []).append(value(f))
    means = [statistics.mean(v) for v in by_split.values()]
    seeds = statistics.mean(max(v) - min(v) for v in by_split.values())
    sd = statistics.stdev(means) if len(means) > 1 else 0.0
    return f"{statistics.mean(means):.3f} (splits sd {sd:.3f}, seeds range {seeds:.3f})"


def paired(fits: list[Fit], baseline: list[Fit]) -> str:
    """The per-split difference of means against the baseline arm: mean [min, max]."""
    diffs = []
    for split in sorted({f.data_seed for f in fits}):
        mine = statistics.mean(f.nll for f in fits if f.data_seed == split)
        base = statistics.mean(f.nll for f in baseline if f.data_seed == split)
        diffs.append(mine - base)
    return f"{statistics.mean(diffs):+.3f} [{min(diffs):+.3f}, {max(diffs):+.3f}]"


def as_they_come(quick: bool, extra: dict) -> dict:
    """Tables with text columns: all columns against the numeric ones alone; and on skewed
    positive targets the log-normal family against the normal one. Splits x train seeds."""
    splits, train_seeds = ([0, 1], [0]) if quick else ([0, 1, 2, 3, 4], [0, 1, 2])
    found = {}
    for name in TEXT_TABLES:
        normal = {"model.distribution": "normal"}
        arms = {"all columns": table_overrides(name) | normal,
                "numeric columns only": table_overrides(name, numeric_only=True) | normal}
        if name in SKEWED:
            arms["all columns, lognormal"] = table_overrides(name) | {
                "model.distribution": "lognormal"}
        if name == "wage":  # one-hot (the default here) against learned embeddings
            arms["all columns, 2-d embeddings"] = table_overrides(name) | normal | {
                "model.embedding_dim": 2}
        fits = {arm: [run_pipeline(name, overrides | {"generate.seed": s, "train.seed": t},
                                   extra)
                      for s in splits for t in train_seeds]
                for arm, overrides in arms.items()}
        base = fits["all columns"]
        print_rows(f"{name} ({TABLES[name].path}): {len(splits)} splits x train seeds "
                   f"{', '.join(map(str, train_seeds))}",
                   ["arm", "test NLL", "vs all columns (per split)", "cov95", "line NLL",
                    "fit s"],
                   [[arm, spread_text(arm_fits), paired(arm_fits, base),
                     f"{statistics.mean(f.coverage_95 for f in arm_fits):.3f}",
                     f"{statistics.mean(f.line_nll for f in arm_fits):.3f}",
                     f"{statistics.mean(f.fit_seconds for f in arm_fits):.1f}"]
                    for arm, arm_fits in fits.items()])
        found[name] = fits
    return found


@dataclass
class Arm:
    """One model or peer on one table: its fits' figures, one row per (split, train seed)."""

    nll: list[float] = field(default_factory=list)
    crps: list[float] = field(default_factory=list)
    coverage_95: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    splits: list[int] = field(default_factory=list)

    def add(self, nll: float, crps: float, coverage_95: float, seconds: float,
            split: int) -> None:
        for values, value in ((self.nll, nll), (self.crps, crps),
                              (self.coverage_95, coverage_95), (self.seconds, seconds),
                              (self.splits, split)):
            values.append(value)

    def per_split(self, score: str = "nll") -> dict[int, float]:
        found: dict[int, list[float]] = {}
        for split, value in zip(self.splits, getattr(self, score), strict=True):
            found.setdefault(split, []).append(value)
        return {split: statistics.mean(values) for split, values in found.items()}

    def text(self, point_mass: bool = False) -> list[str]:
        """The row's figures; an NLL with a point mass's probabilities in it marked (p)."""
        means = list(self.per_split().values())
        sd = statistics.stdev(means) if len(means) > 1 else 0.0
        return [f"{statistics.mean(self.nll):.3f}" + (" (p)" if point_mass else ""), f"{sd:.3f}",
                f"{statistics.mean(self.crps):.3f}", f"{statistics.mean(self.coverage_95):.3f}",
                f"{statistics.mean(self.seconds):.1f}"]


def side_by_side(quick: bool, extra: dict, names: list[str], ensemble_only: bool = False
                 ) -> dict:
    """Each table, five splits: the default ensemble and a single network (train seeds 0-2
    each; 0 alone on the large table) beside NGBoost and CatBoost (fitted once a split: both
    are deterministic given the split) and the homoscedastic line, on the very same
    splits."""
    from deepnormal.family import family_named

    splits, all_seeds = ([0, 1], [0]) if quick else ([0, 1, 2, 3, 4], [0, 1, 2])
    found = {}
    for name in names:
        # A fit on the largest table takes minutes: one train seed there.
        train_seeds = all_seeds[:1] if name in LARGE else all_seeds
        arms: dict[str, Arm] = {}
        families: set[str] = set()  # what the ensemble's fits chose, over every split
        for seed in splits:
            base = table_overrides(name) | {"generate.seed": seed}
            with tempfile.TemporaryDirectory() as tmp:
                data = prepared_splits(params_for(extra | base), Path(tmp))
            for label, peer in PEERS.items():
                result = scored_peer(peer, data)
                arms.setdefault(label, Arm()).add(result.nll, result.crps, result.coverage_95,
                                                  result.seconds, seed)
            models = {"ensemble (defaults)": {}, "single network": {"model.ensemble_size": 1}}
            for label, size in list(models.items())[:1 if ensemble_only else 2]:
                fits = [run_pipeline(name, base | size | {"train.seed": t}, extra)
                        for t in train_seeds]
                for f in fits:
                    arms.setdefault(label, Arm()).add(f.nll, f.crps, f.coverage_95,
                                                      f.fit_seconds, seed)
                if label.startswith("ensemble"):
                    families |= {f.family for f in fits}
                    arms.setdefault("line", Arm()).add(fits[0].line_nll, fits[0].line_crps,
                                                       fits[0].line_coverage_95, math.nan, seed)
        line = arms.pop("line")
        rows = sum(len(split) for split in data.values())
        kind = "defaults chosen on it" if name in CHOSEN_ON else "held out: only reported"
        # A point mass's NLL is partly of probabilities: it compares only by CRPS.
        score = "crps" if any(family_named(f).point_mass for f in families) else "nll"
        kind += f"; families chosen {'/'.join(sorted(families))}"
        catboost_seconds = statistics.mean(arms["CatBoost"].seconds)
        print_rows(f"{name} ({TABLES[name].path}, {rows:,} rows; {kind}): {len(splits)} "
                   f"splits, models x train seeds {', '.join(map(str, train_seeds))}",
                   ["", "test NLL", "splits sd", "CRPS", "cov95", "fit s", "fit / CatBoost"],
                   [[label, *arm.text(score == "crps" and label not in PEERS),
                     f"{statistics.mean(arm.seconds) / catboost_seconds:.1f}"]
                    for label, arm in arms.items()] +
                   [["line", f"{statistics.mean(line.nll):.3f}", "",
                     f"{statistics.mean(line.crps):.3f}",
                     f"{statistics.mean(line.coverage_95):.3f}", "", ""]])
        ensemble = arms["ensemble (defaults)"]
        peer = min(PEERS, key=lambda p: statistics.mean(getattr(arms[p], score)))
        difference = (statistics.mean(getattr(ensemble, score))
                      - statistics.mean(getattr(arms[peer], score)))
        wins = sum(mine <= theirs for mine, theirs in zip(
            ensemble.per_split(score).values(), arms[peer].per_split(score).values(),
            strict=True))
        winner = min([*arms, "line"], key=lambda a: statistics.mean(
            getattr(line if a == "line" else arms[a], score)))
        unit = "nats" if score == "nll" else "CRPS, the target's units"
        print(f"  winner by {score.upper()}: {winner}; the ensemble against the better peer "
              f"({peer}): {difference:+.3f} {unit}, ahead on {wins} of {len(splits)} splits",
              flush=True)
        found[name] = {"arms": arms, "peer": peer, "difference": difference, "score": score}
    return found


def summary(ref: dict | None, found: dict | None, beside: dict | None = None) -> None:
    t = TARGETS
    lines = []

    def check(label: str, value: str, ok: bool) -> None:
        lines.append([label, value, "met" if ok else "NOT MET"])

    if ref:
        check(f"reference mean gap <= {t['reference mean gap']}", f"{ref['mean gap']:.4f}",
              ref["mean gap"] <= t["reference mean gap"])
        check(f"reference worst gap <= {t['reference worst gap']}", f"{ref['worst gap']:.4f}",
              ref["worst gap"] <= t["reference worst gap"])
        low, high = ref["coverage"]
        check(f"reference 95% coverage in [{t['coverage low']}, {t['coverage high']}]",
              f"{low:.3f}..{high:.3f}", t["coverage low"] <= low and high <= t["coverage high"])
        check(f"train-seed spread of the gap <= {t['train-seed spread']}",
              f"{ref['train-seed spread']:.4f}", ref["train-seed spread"] <= t["train-seed spread"])
        if ref["kernel-set difference"] is not None:
            check(f"gap difference, native vs default kernels <= {t['kernel-set difference']}",
                  f"{ref['kernel-set difference']:.4f}",
                  ref["kernel-set difference"] <= t["kernel-set difference"])
        check(f"fit time, default ensemble / single network <= {t['ensemble time ratio']}",
              f"{ref['ensemble time ratio']:.2f}",
              ref["ensemble time ratio"] <= t["ensemble time ratio"])
        check(f"validation NLL swing between epochs, after the first, <= {t['swing']}",
              f"{ref['swing']:.3f}", ref["swing"] <= t["swing"])
    for name, fits in (found or {}).items():
        default, single = fits["default"], fits[1]
        worst = max(f.nll - f.line_nll for f in default)
        mean = statistics.mean(f.nll for f in default)
        line = statistics.mean(f.line_nll for f in default)
        coverage = statistics.mean(f.coverage_95 for f in default)
        check(f"{name}: no fit above its split's line + {t['table margin']}",
              f"worst {worst:+.3f}", worst <= t["table margin"])
        check(f"{name}: mean NLL below the line's", f"{mean:.3f} vs {line:.3f}", mean < line)
        check(f"{name}: mean 95% coverage in [{t['table coverage low']}, "
              f"{t['table coverage high']}]", f"{coverage:.3f}",
              t["table coverage low"] <= coverage <= t["table coverage high"])
        single_mean = statistics.mean(f.nll for f in single)
        check(f"{name}: ensemble mean no worse than the single network's",
              f"{mean:.3f} vs {single_mean:.3f}", mean <= single_mean)
    for name, table in (beside or {}).items():
        ensemble = table["arms"]["ensemble (defaults)"]
        kind = "chosen on" if name in CHOSEN_ON else "held out"
        check(f"{name} ({kind}): ensemble {table['score'].upper()} <= the better peer's "
              f"({table['peer']})",
              f"{table['difference']:+.3f}", table["difference"] <= 0)
        coverage = statistics.mean(ensemble.coverage_95)
        check(f"{name} ({kind}): ensemble 95% coverage in [{t['peer coverage low']}, "
              f"{t['peer coverage high']}]", f"{coverage:.3f}",
              t["peer coverage low"] <= coverage <= t["peer coverage high"])
    if lines:
        print_rows("Summary", ["target", "value", ""], lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a subset, about 6 minutes")
    parser.add_argument("--only", nargs="+",
                        choices=["reference", "tables", "as-they-come", "peers", "fresh-seeds"],
                        default=["reference", "tables", "as-they-come", "peers"])
    parser.add_argument("--data-seeds", nargs="+", type=int, default=[],
                        help="data seeds for --only fresh-seeds (draw them, e.g. "
                             "random.Random(N).sample(range(10000, 100000), 5))")
    parser.add_argument("--tables", nargs="+", choices=list(CHOSEN_ON + REPORTED),
                        default=list(CHOSEN_ON + REPORTED),
                        help="the tables of the side-by-side with the peers (--only peers)")
    parser.add_argument("--ensemble-only", action="store_true",
                        help="the side-by-side without the single network (to weigh a lever)")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                        help="params on top of params.yaml for every run (YAML values)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:  # one reference run for in_child(): its figures as JSON
        overrides, extra = json.loads(args.child)
        print(json.dumps(asdict(run_pipeline("reference", overrides, extra))))
        return
    extra = {key: yaml.safe_load(value) for key, value in
             (item.split("=", 1) for item in args.set)}
    import platform

    import torch

    print(f"{platform.node()}: {os.cpu_count()} CPUs, torch {torch.__version__} "
          f"({torch.backends.cpu.get_cpu_capability()}), {time.strftime('%Y-%m-%d')}; "
          f"python benchmarks/quality.py {' '.join(sys.argv[1:])}", flush=True)
    start = time.perf_counter()
    if "fresh-seeds" in args.only:
        if not args.data_seeds:
            parser.error("--only fresh-seeds needs --data-seeds")
        fresh_seeds(args.data_seeds, extra)
    ref = reference(args.quick, extra) if "reference" in args.only else None
    found = tables(args.quick, extra) if "tables" in args.only else None
    if "as-they-come" in args.only:
        as_they_come(args.quick, extra)
    beside = (side_by_side(args.quick, extra, args.tables, args.ensemble_only)
              if "peers" in args.only else None)
    summary(ref, found, beside)
    print(f"\n{(time.perf_counter() - start) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
