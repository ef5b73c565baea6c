"""Benchmark: what the tune stage's search buys over the defaults, on the quality benchmark's
problems.

    python -m benchmarks.tuning [--trials 30] [--quick] [--only reference tables]

For each real table (examples/: diabetes, engel, wage), five random splits (generate.seed
0-4): the defaults, then a search of --trials trials with params.yaml's tune settings (its
space, seed and pruning) on that split's training and validation rows, then the winner
trained and scored on the test split, exactly as the pipeline would (tune -> lr_find ->
train -> evaluate, in this process). For the reference problem, data seed 0, the same with
the gap to the true distribution. Prints one table per problem and a summary against the
targets: on every table the tuned mean test NLL no worse than the defaults', better on at
least two; the reference gap no worse. Then, on diabetes split 0 (`repeat`, about 2
minutes): two fresh 6-trial searches with the same seed run the same trials, and a study
stopped at 6 trials resumes to 10 in the same study, keeping its first 6. About 50 minutes
on our 2-core machines; --quick (two splits per table, 10 trials) about 10.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import params_for, prepared_splits, print_rows, table_overrides
from benchmarks.quality import TABLE_SECTION, run_pipeline


def quiet_search(params, splits: dict, name: str):
    """Run (or resume) the study in params' tune.storage, the stage's per-trial lines
    silenced: (the study, the winner)."""
    from deepnormal import tuning

    study = tuning.open_study(params, name)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        winner = tuning.search(study, params, splits["train"], splits["val"])
    return study, winner


def tuned_run(problem: str, overrides: dict, trials: int) -> tuple[object, dict, float]:
    """Search on the problem's train/val split, then the pipeline with the winner:
    (the winner's Fit, its values, minutes the search took)."""
    with tempfile.TemporaryDirectory(prefix="deepnormal-tuning-") as tmp:
        params = params_for(overrides | {"tune.enabled": True, "tune.trials": trials,
                                          "tune.storage": f"sqlite:///{tmp}/optuna.db"})
        splits = prepared_splits(params, Path(tmp))
        start = time.perf_counter()
        _, winner = quiet_search(params, splits, "benchmark")
        minutes = (time.perf_counter() - start) / 60
    return run_pipeline(problem, overrides | winner.values, {}), winner.values, minutes


def trial_sequence(storage: str, params, splits: dict, trials: int) -> list[tuple]:
    """Run (or resume) the study to `trials` finished trials: (number, state, values) each."""
    params = params.with_values({"tune.trials": trials, "tune.storage": storage})
    study, _ = quiet_search(params, splits, "repeat")
    return [(t.number, t.state.name, t.params) for t in study.get_trials(deepcopy=False)]


def repeat(first: int = 6, resumed_to: int = 10) -> list[list[str]]:
    """The search's reproducibility targets, on diabetes split 0: summary rows."""
    with tempfile.TemporaryDirectory(prefix="deepnormal-tuning-") as tmp:
        params = params_for(table_overrides("diabetes") | {"tune.enabled": True})
        splits = prepared_splits(params, Path(tmp))
        one = trial_sequence(f"sqlite:///{tmp}/one.db", params, splits, first)
        two = trial_sequence(f"sqlite:///{tmp}/two.db", params, splits, first)
        resumed = trial_sequence(f"sqlite:///{tmp}/one.db", params, splits, resumed_to)
    print(f"\nrepeat (diabetes split 0): {len(one)} trials twice, then resumed to "
          f"{len(resumed)}")
    for number, state, values in resumed:
        again = " (same in the second study)" if number < len(two) and two[number] == (
            number, state, values) else ""
        shown = short(values) if values else "params.yaml as it is"
        print(f"  trial {number:2d} {state:8s} {shown}{again}")
    same = one == two
    kept = resumed[:len(one)] == one and len(resumed) == resumed_to
    return [["same seed and data, same trial sequence", f"{len(one)} of {len(one)}" if same
             else "differs", "met" if same else "NOT MET"],
            ["a resumed study adds trials and keeps the earlier ones",
             f"{len(one)} -> {len(resumed)}", "met" if kept else "NOT MET"]]


def short(values: dict) -> str:
    names = {"model.hidden_sizes": "h", "model.activation": "act", "train.weight_decay": "wd",
             "lr_find.fixed_lr": "lr"}
    return " ".join(f"{names.get(key, key)}={value:.2g}" if isinstance(value, float)
                    else f"{names.get(key, key)}={value}"
                    for key, value in values.items()) or "params.yaml kept"


def compare(problem: str, overrides_per_split: list[dict], trials: int) -> list[tuple]:
    found = []
    for overrides in overrides_per_split:
        default = run_pipeline(problem, overrides, {})
        tuned, values, minutes = tuned_run(problem, overrides, trials)
        found.append((overrides.get("generate.seed", 0), default, tuned, values, minutes))
        print(f"  {problem} split {found[-1][0]}: defaults {default.nll:.4f}, tuned "
              f"{tuned.nll:.4f} ({short(values)}; search {minutes:.1f} min)", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=30, help="trials per search")
    parser.add_argument("--quick", action="store_true", help="two splits, 10 trials")
    parser.add_argument("--only", nargs="+", choices=["reference", "tables", "repeat"],
                        default=["tables", "reference", "repeat"])
    args = parser.parse_args()
    trials = 10 if args.quick else args.trials
    splits = [0, 1] if args.quick else [0, 1, 2, 3, 4]
    start = time.perf_counter()
    results, lines = {}, []
    if "tables" in args.only:
        for name in TABLE_SECTION:
            results[name] = compare(name, [table_overrides(name) | {"generate.seed": s}
                                           for s in splits], trials)
    if "reference" in args.only:
        results["reference"] = compare("reference", [{"generate.seed": 0}], trials)
    for name, found in results.items():
        rows = [[split, f"{d.line_nll:.3f}", f"{d.nll:.3f}", f"{t.nll:.3f}",
                 f"{t.nll - d.nll:+.3f}", f"{d.coverage_95:.3f}", f"{t.coverage_95:.3f}",
                 f"{minutes:.1f}", short(values)] for split, d, t, values, minutes in found]
        print_rows(f"{name}: defaults against a {trials}-trial search", ["split", "line NLL",
                   "default NLL", "tuned NLL", "tuned - default", "default cov95",
                   "tuned cov95", "search min", "winner"], rows)
        default = statistics.mean(d.nll for _, d, *_ in found)
        tuned = statistics.mean(t.nll for _, _, t, *_ in found)
        if name == "reference":
            (_, d, t, *_), = found
            lines.append(["reference gap, tuned no worse than the defaults",
                          f"{t.gap:.4f} vs {d.gap:.4f}", "met" if t.gap <= d.gap else "NOT MET"])
        else:
            lines.append([f"{name}: tuned mean test NLL no worse than the defaults'",
                          f"{tuned:.3f} vs {default:.3f}",
                          "met" if tuned <= default else "NOT MET"])
    better = sum(statistics.mean(t.nll for _, _, t, *_ in found) <
                 statistics.mean(d.nll for _, d, *_ in found)
                 for name, found in results.items() if name != "reference")
    if "tables" in args.only:
        lines.append(["tables where tuning is better (at least 2)", str(better),
                      "met" if better >= 2 else "NOT MET"])
    if "repeat" in args.only:
        lines += repeat()
    print_rows("Summary", ["target", "value", ""], lines)
    print(f"\n{(time.perf_counter() - start) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
