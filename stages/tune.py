"""Stage `tune`: search model and training params with Optuna, scored on the validation split.

Reads params `tune`, and `model`, `train`, `lr_find`, `compute`, `tracking` (every trial
starts from them); the train and val splits.
Writes data/tune/best.yaml: the best trial's values (`params`, e.g. model.hidden_sizes), which
the lr_find and train stages apply on top of params.yaml, and what the search was (`search`);
data/tune/plots/: Optuna's optimisation history and param importances.
With tune.enabled false it writes an empty best.yaml and nothing else happens (no torch, no
Optuna): lr_find and train use params.yaml as it is.

The study lives in tune.storage (default: optuna.db at the repository root) under
tune.study_name plus a digest of the splits and the search's settings: rerunning after an
interruption (Ctrl-C, a killed job) resumes it; changed data or settings start a new study.
More workers can join a running search: start `python stages/tune.py` in another terminal,
or on another machine with a database as tune.storage. With tracking, the search is one
MLflow run (named after the study) with one nested run per trial: params, val_nll, state
(complete, pruned or failed), the best trial tagged best_trial, and the plots.
"""

import argparse
import os
from contextlib import nullcontext

from deepnormal import paths, stores, tracking
from deepnormal.config import load_params
from deepnormal.errors import SEARCH_INTERRUPTED, DeepnormalError, run_stage
from deepnormal.outputs import staged
from deepnormal.prepared import read_splits
from deepnormal.tune_result import write_result


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    params = load_params()
    if not params.tune.enabled:
        with staged(paths.TUNE) as out:
            write_result(out / paths.TUNED.name, {}, {})
        print("tuning is off (tune.enabled: false): lr_find and train use params.yaml as it is")
        return
    splits = read_splits(paths.PREPARED, ("train", "val"))
    tracked = params.tracking.enabled
    if tracked:  # an unusable store is one message now, not after the search
        experiment_id = tracking.connect(params.tracking.experiment_name)

    from deepnormal import tuning

    study = tuning.open_study(params, tuning.study_name(params, splits["train"], splits["val"]))
    done = len(tuning.finished(study))
    storage = stores.redacted(tuning.storage_url(params))  # a password in it shows as ***
    print(f"Optuna study '{study.study_name}' at {storage}: {done} of "
          f"{params.tune.trials} trials done", flush=True)
    callbacks = [tuning.progress_line]
    with tuning.search_run(study, experiment_id, params) if tracked else nullcontext() as run:
        if run is not None:
            trial_runs = tuning.TrialRuns(experiment_id, run.info.run_id)
            trial_runs.backfill(study)  # what an interruption left out
            callbacks.insert(0, trial_runs)
        try:
            winner = tuning.search(study, params, splits["train"], splits["val"], callbacks)
        except KeyboardInterrupt:
            if run is not None:
                raise  # search_run marks the run KILLED
            raise DeepnormalError(SEARCH_INTERRUPTED) from None
        with staged(paths.TUNE) as out:
            plots = tuning.draw(study, out / "plots")
            search = {"study": study.study_name, "storage": storage,
                      "trial": winner.trial, "val_nll": winner.val_nll, "why": winner.why,
                      "trials_finished": len(tuning.finished(study))}
            write_result(out / paths.TUNED.name, winner.values, search)
        if run is not None:
            import mlflow

            trial_runs.backfill(study)  # trials of workers that died
            tuning.record_winner(study, winner, run.info.run_id)
            for path in plots:
                mlflow.log_artifact(str(paths.TUNE / "plots" / path.name), "tune")
            mlflow.log_artifact(str(paths.TUNED), "tune")
    values = ", ".join(f"{key}={value}" for key, value in winner.values.items())
    print(f"chosen: trial {winner.trial}, val_nll {winner.val_nll:.4f} "
          f"[{values or 'params.yaml as it is'}]: {winner.why} -> {paths.TUNED}")


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    run_stage(main)
