"""Benchmark: the tools practitioners use instead, in the families they would try, on exactly
the splits the generate stage writes. The fits are the package's own
(src/deepnormal/peers.py, what `evaluate.peers` adds to a run); `python -m benchmarks.quality
--only peers` sets the Normal ones beside the model on every benchmark table.

    pip install -e '.[peers]'        # CatBoost and NGBoost (make test installs them too)
    python -m benchmarks.peer_families [--tables wage hitters ...] [--splits 5]

For each benchmark table (benchmarks/common.py) and each random split (generate.seed
0..splits-1, the fractions of params.yaml), two peers are fitted on train with early stopping
on val:
- NGBoost (`NGBRegressor(Dist=Normal)`, defaults, early_stopping_rounds=50), categorical
  columns one-hot (an empty cell its own column), empty numeric cells the training median;
  on positive targets also `Dist=LogNormal` (a Normal on log y: the same model);
- CatBoost (`loss_function="RMSEWithUncertainty"`, 3000 iterations, early stopping 200),
  categorical columns as cat_features (an empty cell the category "(missing)"), empty numeric
  cells as they are (CatBoost handles them); on positive targets also on log(y), a
  log-normal CatBoost.
Prints the mean test NLL per point in the target's units over the splits (with the sd of the
split values), CRPS, 95% coverage and fit seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import (
    TABLES,
    PeerFit,
    mean_sd,
    params_for,
    prepared_splits,
    scored_peer,
    table_overrides,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", choices=list(TABLES), default=list(TABLES))
    parser.add_argument("--splits", type=int, default=5)
    args = parser.parse_args()
    print(f"python -m benchmarks.peer_families {' '.join(sys.argv[1:])}; "
          f"{time.strftime('%Y-%m-%d')}")
    for table in args.tables:
        found: dict[str, list[PeerFit]] = {}
        for seed in range(args.splits):
            params = params_for(table_overrides(table) | {"generate.seed": seed})
            with tempfile.TemporaryDirectory() as tmp:
                splits = prepared_splits(params, Path(tmp))
            peers = {"NGBoost Normal": ("ngboost", "normal"), "CatBoost": ("catboost", "normal")}
            if all((split.target > 0).all() for split in splits.values()):
                peers["NGBoost LogNormal"] = ("ngboost", "lognormal")
                peers["CatBoost on log(y)"] = ("catboost", "lognormal")
            for label, (name, distribution) in peers.items():
                found.setdefault(label, []).append(scored_peer(name, splits, distribution))
        print(f"\n{table}: {args.splits} splits")
        for name, rows in found.items():
            nll, sd = mean_sd([r.nll for r in rows])
            print(f"  {name:18s} test NLL {nll:.3f} (splits sd {sd:.3f})  "
                  f"CRPS {statistics.mean(r.crps for r in rows):.3f}  "
                  f"cov95 {statistics.mean(r.coverage_95 for r in rows):.3f}  "
                  f"fit {statistics.mean(r.seconds for r in rows):.1f} s", flush=True)


if __name__ == "__main__":
    main()
