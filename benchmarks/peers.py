"""Benchmark: the tools practitioners use instead, on exactly the splits the generate stage writes.
The fits are the package's own (src/deepnormal/peers.py, what `evaluate.peers` adds to a run);
quality.py --only peers sets them beside the model on every benchmark table.

    pip install -e '.[peers]'        # CatBoost and NGBoost (make test installs them too)
    python benchmarks/peers.py [--tables wage hitters ...] [--splits 5]

For each benchmark table (quality.py's nine) and each random split (generate.seed
0..splits-1, the fractions of params.yaml), the splits come from the generate stage's own code
(benchmarks/quality.py's splits_for), and two peers are fitted on train with early stopping on
val:
- NGBoost (`NGBRegressor(Dist=Normal)`, defaults, early_stopping_rounds=50), categorical
  columns one-hot (an empty cell its own column), empty numeric cells the training median;
  on positive targets also `Dist=LogNormal` (a Normal on log y: the same model);
- CatBoost (`loss_function="RMSEWithUncertainty"`, 3000 iterations, early stopping 200),
  categorical columns as cat_features (an empty cell the category "(missing)"), empty numeric
  cells as they are (CatBoost handles them); on positive targets also on log(y), a
  log-normal CatBoost.
Prints the mean test NLL per point in the target's units over the splits (with the sd of the
split values), CRPS, 95% coverage and fit seconds: the log-target peers, which a practitioner
would try on a skewed target, beside the Normal ones of `quality.py --only peers`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from deepnormal.peers import fit_peer


@dataclass(frozen=True)
class PeerFit:
    """A peer's test scores (per point, the target's units) and its fit time."""

    nll: float
    crps: float
    coverage_95: float
    seconds: float


def scored_peer(name: str, splits: dict, distribution: str = "normal") -> PeerFit:
    """A peer (deepnormal.peers: catboost, ngboost) fitted on train, early-stopped on val,
    scored on test as evaluate scores the model; with distribution lognormal, fitted to
    log(y) (for NGBoost that is its LogNormal: the same parameters and natural gradients)."""
    from deepnormal import metrics
    from deepnormal.family import family

    fam = family(distribution)
    fitted = fit_peer(name, splits["train"], splits["val"], fam)
    test = splits["test"]
    found = metrics.score(test.target, *fitted.predict(test.frame), [0.95], fam)
    return PeerFit(found["nll"], found["crps"], found["picp_95"], fitted.seconds)


PEERS = {"NGBoost": "ngboost", "CatBoost": "catboost"}  # the side-by-side's, Normal both


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from quality import ALL_TABLES, params_with, splits_for, table_overrides

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", choices=list(ALL_TABLES),
                        default=list(ALL_TABLES))
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    print(f"python benchmarks/peers.py {' '.join(sys.argv[1:])}; {time.strftime('%Y-%m-%d')}")
    for table in args.tables:
        found: dict[str, list[PeerFit]] = {}
        for seed in range(args.splits):
            params = params_with(table_overrides(table) | {"generate.seed": seed})
            with tempfile.TemporaryDirectory() as tmp:
                splits = splits_for(params, Path(tmp))
            peers = {"NGBoost Normal": ("ngboost", "normal"), "CatBoost": ("catboost", "normal")}
            if all((split.target > 0).all() for split in splits.values()):
                peers["NGBoost LogNormal"] = ("ngboost", "lognormal")
                peers["CatBoost on log(y)"] = ("catboost", "lognormal")
            for label, (name, distribution) in peers.items():
                found.setdefault(label, []).append(scored_peer(name, splits, distribution))
        print(f"\n{table}: {args.splits} splits")
        for name, rows in found.items():
            nll = [r.nll for r in rows]
            sd = statistics.stdev(nll) if len(nll) > 1 else 0.0
            print(f"  {name:18s} test NLL {statistics.mean(nll):.3f} (splits sd {sd:.3f})  "
                  f"CRPS {statistics.mean(r.crps for r in rows):.3f}  "
                  f"cov95 {statistics.mean(r.coverage_95 for r in rows):.3f}  "
                  f"fit {statistics.mean(r.seconds for r in rows):.1f} s", flush=True)


if __name__ == "__main__":
    main()
