"""Benchmark: model quality on the reference data, data seeds 0-4, default params.

    python benchmarks/quality.py [--seeds 0,1,2,3,4]

For each seed, runs the whole pipeline (`dvc repro` with generate.seed set) in a temporary
copy of the repository and prints the chosen lr, epochs run, test NLL, oracle NLL, the gap
and the 95% interval coverage; then the mean and worst gap.
Targets (issue "Model quality"): mean gap <= 0.10, worst <= 0.15, coverage in [0.93, 0.97].
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
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated data seeds")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    header = (f"{'seed':>4} {'lr':>9} {'epochs':>6} {'test NLL':>9} {'oracle':>8} "
              f"{'gap':>7} {'cov95':>6}")
    print(header)
    gaps = []
    with tempfile.TemporaryDirectory(prefix="deepnormal-quality-") as tmp:
        root = copy_repo(Path(tmp))
        for seed in seeds:
            edit_params(root, {"generate": {"seed": seed}})
            dvc("repro", cwd=root)
            data = root / "data"
            test = json.loads((data / "evaluate/metrics.json").read_text())["test"]
            summary = json.loads((data / "train/summary.json").read_text())
            gaps.append(test["nll_gap"])
            print(f"{seed:>4} {summary['lr']:>9.3g} {summary['epochs_run']:>6} "
                  f"{test['model']['nll']:>9.4f} {test['oracle']['nll']:>8.4f} "
                  f"{test['nll_gap']:>7.4f} {test['model']['picp_95']:>6.3f}", flush=True)
    print(f"mean gap {sum(gaps) / len(gaps):.4f}, worst gap {max(gaps):.4f}")


if __name__ == "__main__":
    main()
