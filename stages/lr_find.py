"""Stage `lr_find`: choose the learning rate with an LR range test, and check it.

Reads params `lr_find`, `model`, and train.{seed,batch_size,max_steps_per_epoch,
max_batch_size,optimizer,weight_decay,loss,beta} (the range test runs at the batch training
will use), with the tune stage's winner (data/tune/best.yaml) on top; the training split.
Writes data/lr_find/lr.json (chosen lr, rule, any fallback and why), curve.csv (the range
test: lr, smoothed loss) and curve.png (the curve with the chosen lr marked).
With lr_find.fixed_lr set, the search is skipped and that value is recorded.
"""

import argparse
import json

import numpy as np
import pandas as pd

from deepnormal import paths, plots
from deepnormal.config import load_params
from deepnormal.errors import run_stage
from deepnormal.lr_rule import fixed_choice
from deepnormal.outputs import staged
from deepnormal.prepared import read_split, split_path
from deepnormal.tune_result import apply_tuned


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    params, _ = apply_tuned(load_params(), paths.TUNED)
    p = params.lr_find
    train = read_split(split_path(paths.PREPARED, "train"))
    choice = fixed_choice(p.fixed_lr)
    if choice is not None:  # no search: no torch, no Lightning
        lrs, losses = np.array([]), np.array([])
    else:
        from deepnormal.training import find_lr

        lrs, losses, choice = find_lr(params, train)
    note = choice.rule if choice.fallback_reason is None else (
        f"fallback: {choice.fallback_reason}")
    with staged(paths.LR_FIND) as out:
        pd.DataFrame({"lr": lrs, "loss": losses}).to_csv(out / paths.LR_CURVE.name, index=False)
        (out / paths.LR_JSON.name).write_text(json.dumps(choice.as_dict(), indent=2) + "\n")
        plots.lr_range_test(lrs, losses, choice.lr, note, out / paths.LR_PLOT.name)
    print(f"chosen lr {choice.lr:.4g} ({note})")


if __name__ == "__main__":
    run_stage(main)
