"""Benchmark: wall time of each stage in a cold `dvc repro` on default params, the no-op
`dvc repro` time (beside `dvc status`), and the resulting test NLL gap to the oracle.

    python benchmarks/pipeline.py [--runs 3]

Runs in a temporary copy of the repository (its own MLflow store, empty DVC cache), so the
workspace and your tracking store are untouched.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.conftest import copy_repo, dvc

STAGES = ("generate", "lr_find", "train", "evaluate")


def timed(*args: str, cwd: Path) -> float:
    start = time.perf_counter()
    dvc(*args, cwd=cwd)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="no-op / status repetitions")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepnormal-bench-") as tmp:
        root = copy_repo(Path(tmp))
        print("cold `dvc repro -s STAGE` per stage, default params (includes DVC's own start-up)")
        total = 0.0
        for stage in STAGES:
            seconds = timed("repro", "-s", stage, cwd=root)
            total += seconds
            print(f"  {stage:<10} {seconds:7.1f} s")
        print(f"  {'total':<10} {total:7.1f} s")
        noop = [timed("repro", cwd=root) for _ in range(args.runs)]
        status = [timed("status", cwd=root) for _ in range(args.runs)]
        print(f"no-op `dvc repro`: median {statistics.median(noop):.1f} s over {args.runs} runs "
              f"(`dvc status`: {statistics.median(status):.1f} s)")
        metrics = json.loads((root / "data/evaluate/metrics.json").read_text())["test"]
        print(f"test NLL {metrics['model']['nll']:.4f}, oracle NLL {metrics['oracle']['nll']:.4f}, "
              f"gap {metrics['nll_gap']:.4f}, 95% coverage {metrics['model']['picp_95']:.3f}")


if __name__ == "__main__":
    main()
