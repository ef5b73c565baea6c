"""Benchmark: the model on the shipped real example (examples/diabetes.csv, 10 features)
beside the homoscedastic linear baseline, default params otherwise.

    python benchmarks/own_data.py [--seeds 0,1,2]

Runs `dvc repro` with data.source=file in a temporary copy of the repository, once per
split seed, and prints test NLL and 95% interval coverage of both predictors.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import copy_repo, dvc, edit_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated split seeds")
    args = parser.parse_args()
    print(f"{'seed':>4} {'model NLL':>10} {'linear NLL':>11} {'model cov95':>12} "
          f"{'linear cov95':>13} {'epochs':>7}")
    with tempfile.TemporaryDirectory(prefix="deepnormal-own-data-") as tmp:
        root = copy_repo(Path(tmp))
        for seed in (int(s) for s in args.seeds.split(",")):
            edit_params(root, {"data": {"source": "file"}, "generate": {"seed": seed}})
            dvc("repro", cwd=root)
            test = json.loads((root / "data/evaluate/metrics.json").read_text())["test"]
            epochs = json.loads((root / "data/train/summary.json").read_text())["epochs_run"]
            model, linear = test["model"], test["linear"]
            print(f"{seed:>4} {model['nll']:>10.3f} {linear['nll']:>11.3f} "
                  f"{model['picp_95']:>12.3f} {linear['picp_95']:>13.3f} {epochs:>7}",
                  flush=True)


if __name__ == "__main__":
    main()
